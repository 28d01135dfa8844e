"""`python -m core.tasks` prints the README's task table, made from the specs."""

from core.tasks import tasks_table

print(tasks_table())
