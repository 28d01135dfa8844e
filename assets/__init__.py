"""The page's style sheet and script (ui.layout reads them). A package only so that a wheel carries them as package
data: a non-editable `pip install .` once ran the page without its styles and script."""
