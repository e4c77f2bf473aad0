from crowdlens.cli import app

app(prog_name="crowdlens")
