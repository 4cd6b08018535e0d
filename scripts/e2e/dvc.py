"""`serval data` against the real DVC: each tool reads what the other writes.

    python scripts/e2e/dvc.py PATH_TO_SERVAL PATH_TO_DVC

1. serval data add (a file, a CRLF file, a directory with a nested and an empty file) in a `dvc init` project:
   `dvc status` is clean, and `dvc checkout` restores the deleted data byte for byte
2. dvc add of the same kinds of data: `serval data status --json` says unchanged with DVC's md5 for each, and
   `serval data checkout` restores the deleted data from DVC's cache
3. a changed file and a deleted one: both tools call them changed, serval naming them modified and missing
4. a folder without .dvc/: serval makes the project, and `dvc status` reads it as clean
5. serval data log lists both versions of a re-added file, newest first, with its row count
Prints one "ok"/"FAIL" line per check and exits non-zero on any failure.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

serval, dvc = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
check = Checks()
work = tempfile.mkdtemp(prefix="serval-e2e-dvc-")
store = os.path.join(work, "state")


def run(command, cwd, *arguments):
    result = subprocess.run([command, *arguments], cwd=cwd, capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr


def serval_data(cwd, *arguments):
    return run(serval, cwd, "data", *arguments, "--data-dir", store)


def make_data(root):
    """A CSV, a CRLF CSV and a directory with a nested file and an empty one; returns their contents by path."""
    contents = {
        "train.csv": b"x,y,label\n1.5,2,a\n3,4.25,b\n",
        "crlf.csv": b"x,y\r\n1,2\r\n3,4\r\n",
        "images/cat.txt": b"meow\n",
        "images/nested/dog.txt": b"woof\n",
        "images/empty": b"",
    }
    for path, data in contents.items():
        os.makedirs(os.path.dirname(os.path.join(root, path)) or root, exist_ok=True)
        with open(os.path.join(root, path), "wb") as f:
            f.write(data)
    return contents


def snapshot(root, contents):
    return all(os.path.exists(os.path.join(root, p)) and open(os.path.join(root, p), "rb").read() == d for p, d in contents.items())


def dvc_clean(root):
    code, out, err = run(dvc, root, "status", "--json")
    return code == 0 and json.loads(out or "{}") == {}, (code, out, err)


def dvc_md5(record):
    """The md5 of the single output a .dvc file records (its `- md5: ...` line)."""
    for line in open(record):
        if line.strip().lstrip("- ").startswith("md5:"):
            return line.split("md5:", 1)[1].strip()
    return None


# 1. serval writes, dvc reads
one = os.path.join(work, "serval-writes")
os.makedirs(one)
run(dvc, one, "init", "--no-scm", "-q")
contents = make_data(one)
code, out, err = serval_data(one, "add", "train.csv", "crlf.csv", "images")
check("serval data add: exit 0", code == 0, err)
clean, detail = dvc_clean(one)
check("dvc status is clean after serval data add", clean, detail)
for path in ("train.csv", "crlf.csv"):
    os.remove(os.path.join(one, path))
shutil.rmtree(os.path.join(one, "images"))
code, out, err = run(dvc, one, "checkout")
check("dvc checkout restores what serval added, byte for byte", code == 0 and snapshot(one, contents), (code, out, err))

# 2. dvc writes, serval reads
two = os.path.join(work, "dvc-writes")
os.makedirs(two)
run(dvc, two, "init", "--no-scm", "-q")
contents = make_data(two)
code, out, err = run(dvc, two, "add", "-q", "train.csv", "crlf.csv", "images")
check("dvc add: exit 0", code == 0, err)
code, out, err = serval_data(two, "status", "--json")
status = json.loads(out) if code == 0 else {}
expected = {path: {"status": "unchanged", "md5": dvc_md5(os.path.join(two, path + ".dvc"))} for path in ("train.csv", "crlf.csv", "images")}
check("serval data status: unchanged, with DVC's md5 for the file, the CRLF file and the directory", status == expected, (status, expected, err))
for path in ("train.csv", "crlf.csv"):
    os.remove(os.path.join(two, path))
shutil.rmtree(os.path.join(two, "images"))
code, out, err = serval_data(two, "checkout", "train.csv.dvc", "crlf.csv.dvc", "images.dvc")
check("serval data checkout restores what dvc added, from DVC's cache, byte for byte", code == 0 and snapshot(two, contents), (code, out, err))
clean, detail = dvc_clean(two)
check("dvc status is clean after serval data checkout", clean, detail)

# 3. changes
with open(os.path.join(two, "crlf.csv"), "ab") as f:
    f.write(b"5,6\r\n")
os.remove(os.path.join(two, "images/nested/dog.txt"))
os.remove(os.path.join(two, "train.csv"))
code, out, err = serval_data(two, "status", "--json")
status = {path: value["status"] for path, value in json.loads(out).items()} if code == 0 else {}
check("serval data status: modified for a changed file and a changed directory, missing for a deleted file (exit 0)",
      status == {"train.csv": "missing", "crlf.csv": "modified", "images": "modified"}, (status, err))
clean, _ = dvc_clean(two)
check("dvc status agrees that the workspace changed", not clean)

# 4. no .dvc/ yet
three = os.path.join(work, "no-project")
os.makedirs(three)
contents = make_data(three)
code, out, err = serval_data(three, "add", "train.csv", "images")
check("serval data add without .dvc/ makes a minimal project", code == 0 and os.path.isfile(os.path.join(three, ".dvc/config")), err)
clean, detail = dvc_clean(three)
check("dvc status reads serval's project as clean", clean, detail)

# 5. the log
with open(os.path.join(three, "train.csv"), "ab") as f:
    f.write(b"5,6,c\n")
serval_data(three, "add", "train.csv")
code, out, err = serval_data(three, "log", "train.csv", "--json")
versions = [json.loads(line) for line in out.splitlines()] if code == 0 else []
check("serval data log: two versions, newest first, with row counts 3 and 2",
      [v.get("rows") for v in versions] == [3, 2] and versions[0]["md5"] == dvc_md5(os.path.join(three, "train.csv.dvc")), (versions, err))

shutil.rmtree(work, ignore_errors=True)
check.finish()
