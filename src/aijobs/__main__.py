from aijobs.cli import app

app(prog_name="aijobs")
