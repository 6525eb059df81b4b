#!/usr/bin/env python3
"""Real-world benign traffic for training and for held-back figures: the
recipe, never the captures (they stay outside the repository).

Public test captures of three projects, taken from a git checkout of each
at a pinned commit: Zeek's `testing/btest/Traces`, suricata-verify's test
captures and tcpdump's `tests/`. Ordinary application traffic of many
protocols and stacks, which the lab's few scripted clients never show.
Left out:

- captures whose path names an attack, a scan, a flood, malformed or
  fuzzed input, an evasion, an exploit or malware (KEYWORDS below): they are
  not benign, or not traffic anyone's network carries;
- the Zeek oracle's traces (`../shared/zeek-oracle`, by path and sha256):
  they are the real-world figure of models/README.md, never trained on;
- nDPI's test captures: reserved for evaluation by others, never fetched.

Every kept file is assigned to `train` or `heldout` by its sha256 (one in
four held out), so the split does not depend on the order of listing and a
file keeps its side when the selection grows.

    realworld.py select --zeek DIR --suricata-verify DIR --tcpdump DIR \\
        [--oracle ../shared/zeek-oracle] [--manifest realworld.json]
    realworld.py extract --zeek DIR --suricata-verify DIR --tcpdump DIR \\
        --dest DIR [--manifest realworld.json]

DIR is a git checkout (bare or not) of https://github.com/zeek/zeek,
https://github.com/OISF/suricata-verify and
https://github.com/the-tcpdump-group/tcpdump. `select` writes the manifest
(source, commit, path, sha256, split of every kept file); `extract` copies
the files of the manifest's commits to DEST/<split>/<source>/..., checks
every sha256 and refuses on a mismatch.
"""

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = {
    "zeek": ("https://github.com/zeek/zeek", "testing/btest/Traces/"),
    "suricata-verify": ("https://github.com/OISF/suricata-verify", ""),
    "tcpdump": ("https://github.com/the-tcpdump-group/tcpdump", "tests/"),
}
EXTENSIONS = (".pcap", ".pcapng", ".trace", ".cap")
# Path words that mark a capture as an attack, or as input crafted to break
# parsers rather than traffic a network carries.
KEYWORDS = [
    "attack", "scan", "flood", "dos", "brute", "exploit", "cve", "malware",
    "trojan", "botnet", "backdoor", "shellcode", "ransom", "poison", "spoof",
    "evasion", "evade", "fuzz", "crash", "overflow", "overread",
    "underflow", "malformed", "invalid", "bad", "bogus", "broken", "corrupt",
    "truncat", "mangled", "hostile", "inject", "heartbleed", "sqli", "xss",
    "dns-tunnel", "dnstunnel", "iodine", "covert", "exfil", "-poc", "asan",
    "ubsan", "heap", "stack-", "infinite", "dga", "cobalt", "meterpreter",
    "mirai", "oobr", "nmap", "masscan", "zmap", "nikto", "sqlmap", "metasploit",
    "hydra",
]
KEYWORD_RE = re.compile("|".join(re.escape(k) for k in KEYWORDS), re.IGNORECASE)


def git(repo, *args, binary=False):
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                          text=not binary)
    if done.returncode != 0:
        err = done.stderr if isinstance(done.stderr, str) else done.stderr.decode()
        sys.exit(f"git -C {repo} {' '.join(args)}: {err.strip()}")
    return done.stdout


def oracle_exclusions(oracle):
    paths, hashes = set(), set()
    for case in sorted(oracle.glob("*/case.toml")):
        meta = tomllib.loads(case.read_text())
        paths.update(meta.get("pcap_repo_paths", []))
        for p in meta.get("pcaps", []):
            f = case.parent / p
            if f.is_file():
                hashes.add(hashlib.sha256(f.read_bytes()).hexdigest())
    return paths, hashes


def split_of(sha):
    return "heldout" if int(sha[:8], 16) % 4 == 0 else "train"


def select(args):
    oracle_paths, oracle_hashes = oracle_exclusions(args.oracle)
    manifest = {"sources": {}, "keywords": KEYWORDS, "files": []}
    seen = set()
    counts = {}
    for name, (url, prefix) in SOURCES.items():
        repo = getattr(args, name.replace("-", "_"))
        commit = git(repo, "rev-parse", "HEAD").strip()
        manifest["sources"][name] = {"url": url, "commit": commit}
        listing = git(repo, "ls-tree", "-r", "-l", commit, "--", prefix or ".")
        kept = dropped = 0
        for line in listing.splitlines():
            meta, path = line.split("\t", 1)
            if not path.lower().endswith(EXTENSIONS):
                continue
            size = meta.split()[3]
            if KEYWORD_RE.search(path) or (name == "zeek" and path in oracle_paths):
                dropped += 1
                continue
            shown = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"],
                                   capture_output=True)
            data = shown.stdout
            # Absent from a partial checkout, or a Git LFS pointer: not here.
            if shown.returncode != 0 or data.startswith(b"version https://git-lfs"):
                dropped += 1
                continue
            sha = hashlib.sha256(data).hexdigest()
            if sha in oracle_hashes or sha in seen:
                dropped += 1
                continue
            seen.add(sha)
            manifest["files"].append({"source": name, "path": path, "sha256": sha,
                                      "bytes": int(size), "split": split_of(sha)})
            kept += 1
        counts[name] = (kept, dropped)
    # One file per line: a reviewable diff when the selection changes.
    files = ",\n".join("  " + json.dumps(f, sort_keys=True) for f in manifest["files"])
    head = json.dumps({k: v for k, v in manifest.items() if k != "files"}, sort_keys=True)
    args.manifest.write_text(head[:-1] + ',\n "files": [\n' + files + "\n ]}\n")
    for name, (k, d) in counts.items():
        print(f"{name}: {k} kept, {d} left out")
    splits = {}
    for f in manifest["files"]:
        splits[f["split"]] = splits.get(f["split"], 0) + 1
    print(f"wrote {args.manifest}: {splits}")


def extract(args):
    manifest = json.loads(args.manifest.read_text())
    for name, src in manifest["sources"].items():
        repo = getattr(args, name.replace("-", "_"))
        have = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", src["commit"]],
                              capture_output=True)
        if have.returncode != 0:
            sys.exit(f"{repo}: lacks commit {src['commit']} of {src['url']}")
    n = 0
    for f in manifest["files"]:
        repo = getattr(args, f["source"].replace("-", "_"))
        data = git(repo, "show", f"{manifest['sources'][f['source']]['commit']}:{f['path']}",
                   binary=True)
        sha = hashlib.sha256(data).hexdigest()
        if sha != f["sha256"]:
            sys.exit(f"{f['source']}:{f['path']}: sha256 {sha}, the manifest says {f['sha256']}")
        out = args.dest / f["split"] / f["source"] / f["path"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        n += 1
    print(f"extracted {n} captures to {args.dest}/{{train,heldout}}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("select", "extract"):
        p = sub.add_parser(cmd)
        for name in SOURCES:
            p.add_argument(f"--{name}", type=Path, required=True,
                           help=f"a git checkout of {SOURCES[name][0]}")
        p.add_argument("--manifest", type=Path, default=HERE / "realworld.json")
        if cmd == "select":
            p.add_argument("--oracle", type=Path,
                           default=HERE.parent.parent.parent / "shared" / "zeek-oracle")
        else:
            p.add_argument("--dest", type=Path, required=True)
    args = ap.parse_args()
    select(args) if args.cmd == "select" else extract(args)


if __name__ == "__main__":
    main()
