#!/usr/bin/env python3
"""Build the libFuzzer targets in Fuzz/Targets and run each for a bounded time.

The product's library modules are built by SwiftPM into .build/fuzz with AddressSanitizer and libFuzzer's
coverage instrumentation (`-sanitize=fuzzer`) and with `-enable-testing`, so that a harness may use
`@testable import`. Each harness is then compiled with swiftc and linked against those modules' object files
and libFuzzer's runtime from the Swift toolchain. Nothing is written outside .build/fuzz: new corpus entries
go to .build/fuzz/corpus/TARGET, crashing inputs to .build/fuzz/artifacts/TARGET and libFuzzer's output to
.build/fuzz/logs/TARGET.log. The committed seeds in Fuzz/Corpus/TARGET are only read.

Exits 1 when any target crashed, leaked, timed out or failed to start, and 2 when the build failed.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "Fuzz")
SCRATCH = os.path.join(ROOT, ".build", "fuzz")

# Target name: (harness file in Fuzz/Targets, dictionary in Fuzz/Dictionaries or None, extra libFuzzer options).
TARGETS = {
    # The receive buffer reclaims consumed bytes only past 4096 of them, and libFuzzer keeps inputs to 4096 bytes
    # unless -max_len or larger seeds raise that.
    "http-request": ("HTTPRequestFuzzer.swift", "http.dict", ["-max_len=16384"]),
    "chunked-decoder": ("ChunkedDecoderFuzzer.swift", "chunked.dict", []),
    "signature-headers": ("SignatureHeadersFuzzer.swift", "signature.dict", []),
    "event-validation": ("EventValidationFuzzer.swift", "json.dict", []),
    "journal-record": ("JournalRecordFuzzer.swift", None, []),
}
SUPPORT_FILE = "FuzzSupport.swift"
SANITIZER_FLAGS = ["--sanitize=address", "-Xswiftc", "-sanitize=fuzzer", "-Xswiftc", "-enable-testing"]


def swift_build_command(swift, *extra):
    return [swift, "build", "-c", "release", "--scratch-path", SCRATCH, *SANITIZER_FLAGS, *extra]


def run_checked(command, step):
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        print(f"fuzz: {step} failed with exit code {result.returncode}: {' '.join(command)}", file=sys.stderr)
        sys.exit(2)


def library_targets(swift):
    """Returns the library targets (Swift, C and system libraries) of the relay executable, from the package."""
    output = subprocess.run(
        [swift, "package", "describe", "--type", "json"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    description = json.loads(output[output.index("{"):])
    return [
        target
        for target in description["targets"]
        if target["type"] in ("library", "system-target") and "portout-relay" in target.get("product_memberships", [])
    ]


def module_inputs(targets, bin_path):
    """Returns the swiftc flags that make the modules importable and the object files that implement them."""
    flags = ["-I", os.path.join(bin_path, "Modules")]
    objects = []
    for target in targets:
        name = target["name"]
        source_path = os.path.join(ROOT, target["path"])
        build_path = os.path.join(bin_path, f"{name}.build")
        kind = target["module_type"]
        if kind == "SystemLibraryTarget":
            flags += ["-Xcc", f"-fmodule-map-file={os.path.join(source_path, 'module.modulemap')}"]
        elif kind == "ClangTarget":
            include = os.path.join(source_path, "include")
            generated = os.path.join(build_path, "module.modulemap")
            module_map = generated if os.path.exists(generated) else os.path.join(include, "module.modulemap")
            flags += ["-Xcc", f"-fmodule-map-file={module_map}", "-Xcc", f"-I{include}"]
            objects += sorted(glob.glob(os.path.join(build_path, "*.o")))
        else:
            # The output file map lists the objects of the current sources only, never those of deleted files.
            with open(os.path.join(build_path, "output-file-map.json")) as file:
                output_map = json.load(file)
            objects += [entry["object"] for source, entry in output_map.items() if source and "object" in entry]
    return flags, objects


def find_swiftc(swift):
    """Returns the swiftc beside `swift`, after checking that its toolchain has libFuzzer's runtime."""
    swift_path = shutil.which(swift)
    if swift_path is None:
        sys.exit(f"fuzz: {swift} not found; put Swift 6 on the PATH or pass --swift")
    bin_directory = os.path.dirname(os.path.realpath(swift_path))
    toolchain_lib = os.path.join(os.path.dirname(bin_directory), "lib")
    runtimes = glob.glob(os.path.join(toolchain_lib, "clang", "*", "lib", "*", "libclang_rt.fuzzer-*.a"))
    runtimes += glob.glob(os.path.join(toolchain_lib, "swift", "clang", "lib", "*", "libclang_rt.fuzzer-*.a"))
    if not runtimes:
        sys.exit(f"fuzz: libFuzzer's runtime (libclang_rt.fuzzer) is missing from the toolchain in {toolchain_lib}; "
                 "use a Swift toolchain from swift.org, which includes it")
    return os.path.join(bin_directory, "swiftc")


def build(swift, names):
    swiftc = find_swiftc(swift)
    # PortoutRelay depends on every other library module of the relay, so this builds them all.
    run_checked(swift_build_command(swift, "--target", "PortoutRelay"), "building the product modules")
    bin_path = subprocess.run(
        swift_build_command(swift, "--show-bin-path"), cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    flags, objects = module_inputs(library_targets(swift), bin_path)
    os.makedirs(os.path.join(SCRATCH, "bin"), exist_ok=True)
    for name in names:
        harness, _, _ = TARGETS[name]
        module = "Fuzz" + "".join(part.capitalize() for part in name.split("-"))
        print(f"fuzz: linking {name}", flush=True)
        run_checked(
            [
                swiftc, "-O", "-g", "-swift-version", "6", "-parse-as-library", "-sanitize=fuzzer,address",
                "-use-ld=lld", "-module-name", module, *flags,
                os.path.join(FUZZ, "Targets", SUPPORT_FILE), os.path.join(FUZZ, "Targets", harness),
                *objects, "-o", binary_path(name),
            ],
            f"linking {name}",
        )


def binary_path(name):
    return os.path.join(SCRATCH, "bin", name)


def last_match(pattern, text):
    matches = re.findall(pattern, text, re.MULTILINE)
    return matches[-1] if matches else None


# Lines that name why a run stopped, most specific first: a failed check, a sanitizer report, libFuzzer's own.
FAILURE_PATTERNS = [
    r"^.*Fatal error: .*$",
    r"^==\d+==\s*ERROR: (?:AddressSanitizer|LeakSanitizer).*$",
    r"^==\d+==\s*ERROR: libFuzzer: .*$",
]


def failure_reason(log_text, exit_code):
    for pattern in FAILURE_PATTERNS:
        match = re.search(pattern, log_text, re.MULTILINE)
        if match:
            return match.group(0).strip()
    return f"exit code {exit_code}"


def summarize(name, log_text, exit_code, artifacts_before, artifact_dir):
    """Returns one result row read from libFuzzer's output."""
    executions = last_match(r"^stat::number_of_executed_units:\s*(\d+)", log_text)
    rate = last_match(r"^stat::average_exec_per_sec:\s*(\d+)", log_text)
    progress = last_match(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", log_text)
    if executions is None and progress is not None:
        executions = progress[0]
    new_artifacts = sorted(set(os.listdir(artifact_dir)) - artifacts_before)
    failed = exit_code != 0 or new_artifacts
    return {
        "target": name,
        "executions": int(executions or 0),
        "rate": int(rate or 0),
        "coverage": int(progress[1]) if progress else 0,
        "features": int(progress[2]) if progress else 0,
        "corpus": int(progress[3]) if progress else 0,
        "failure": failure_reason(log_text, exit_code) if failed else None,
        "artifacts": [os.path.join(artifact_dir, artifact) for artifact in new_artifacts],
    }


def run_target(name, seconds):
    _, dictionary, options = TARGETS[name]
    scratch_corpus = os.path.join(SCRATCH, "corpus", name)
    artifact_dir = os.path.join(SCRATCH, "artifacts", name)
    log_path = os.path.join(SCRATCH, "logs", f"{name}.log")
    for directory in (scratch_corpus, artifact_dir, os.path.dirname(log_path)):
        os.makedirs(directory, exist_ok=True)
    # libFuzzer writes new inputs to the first corpus folder only, so the committed seeds stay unchanged.
    command = [
        binary_path(name), f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=10",
        "-rss_limit_mb=2048", f"-artifact_prefix={artifact_dir}/", *options,
    ]
    if dictionary:
        command.append(f"-dict={os.path.join(FUZZ, 'Dictionaries', dictionary)}")
    command += [scratch_corpus, os.path.join(FUZZ, "Corpus", name)]
    artifacts_before = set(os.listdir(artifact_dir))
    print(f"fuzz: running {name} for {seconds} s, output in {os.path.relpath(log_path, ROOT)}", flush=True)
    # The Swift runtime's backtracer would catch a failed check's trap first and trip AddressSanitizer while it
    # reads memory, which buries libFuzzer's own report.
    environment = dict(os.environ, SWIFT_BACKTRACE="enable=no")
    started = time.monotonic()
    with open(log_path, "w") as log:
        exit_code = subprocess.run(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    elapsed = time.monotonic() - started
    with open(log_path, errors="replace") as log:
        row = summarize(name, log.read(), exit_code, artifacts_before, artifact_dir)
    row["seconds"] = round(elapsed)
    return row


def print_table(rows):
    print()
    print(f"{'target':<20} {'seconds':>7} {'executions':>12} {'exec/s':>8} {'coverage':>8} {'features':>8} "
          f"{'corpus':>6}  result")
    for row in rows:
        result = "ok" if row["failure"] is None else "FAILED"
        print(f"{row['target']:<20} {row['seconds']:>7} {row['executions']:>12} {row['rate']:>8} {row['coverage']:>8} "
              f"{row['features']:>8} {row['corpus']:>6}  {result}")
    for row in rows:
        if row["failure"] is not None:
            print(f"\n{row['target']}: {row['failure']}")
            for artifact in row["artifacts"]:
                print(f"  input saved as {os.path.relpath(artifact, ROOT)}")
            print(f"  reproduce: SWIFT_BACKTRACE=enable=no {os.path.relpath(binary_path(row['target']), ROOT)} INPUT")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"targets to run (default: all of "
                        f"{', '.join(TARGETS)})")
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per target in seconds (default 60)")
    parser.add_argument("--build-only", action="store_true", help="build the targets without running them")
    parser.add_argument("--swift", default=os.environ.get("SWIFT", "swift"), help="the swift command to use")
    arguments = parser.parse_args()
    unknown = [name for name in arguments.targets if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target {', '.join(unknown)}; the targets are {', '.join(TARGETS)}")
    if arguments.seconds < 1:
        parser.error("--seconds must be at least 1")
    names = arguments.targets or list(TARGETS)
    build(arguments.swift, names)
    if arguments.build_only:
        return 0
    rows = [run_target(name, arguments.seconds) for name in names]
    print_table(rows)
    return 1 if any(row["failure"] is not None for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
