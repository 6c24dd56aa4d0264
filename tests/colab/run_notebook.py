"""Execute a notebook in a kernel of the Python that runs this script, and save it with its outputs.

The Colab-shaped test runs it with the interpreter of its Colab-like virtual environment, so that the
kernel is that environment's. Prints ``finished``, or ``kernel died`` when the kernel ended mid-run.

    python run_notebook.py NOTEBOOK.ipynb WORKING_FOLDER
"""

import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

path, working_folder = sys.argv[1], sys.argv[2]
notebook = nbformat.read(path, as_version=4)
client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": working_folder}})
try:
    client.execute()
    outcome = "finished"
except DeadKernelError:
    outcome = "kernel died"
nbformat.write(notebook, path)
print(outcome)
