"""``ocifs status``, ``-o metrics`` and ``ocifs status --check`` on real mounts.

A fault proxy in front of moto slows, fails or stalls chosen requests, so what status shows
(uploads in flight, retries, errors) is provoked, and what the store saw (the proxy's request
log) is what the counters are compared with.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from mounting import OCIFS, unique_bucket
from ocifs.run import control

MiB = 1024 * 1024
SMALL_PARTS = ["multipart_size=5", "multipart_threshold=5", "parallel_count=1"]


def new_bucket(server) -> str:
    name = unique_bucket("status")
    server.create_bucket(name)
    return name


def status(mount, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*OCIFS, "status", str(mount.mountpoint), *extra], capture_output=True,
                          text=True, timeout=60)


def snapshot(mount) -> dict:
    """What ``ocifs status --json`` prints, asked from this process: a child process would
    close (so flush, so upload) every file this test holds open on the mount."""
    return control.ask(control.socket_path(str(mount.mountpoint)), {}, timeout=30)


def snapshot_by_command(mount) -> dict:
    result = status(mount, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    """``name{labels}`` -> value of every ocifs_ sample."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("ocifs_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def write_in_thread(path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as f:
            for start in range(0, len(data), MiB):
                f.write(data[start:start + MiB])
    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_status_shows_a_large_upload_in_flight_with_growing_progress(faulty_moto, mount_factory):
    bucket = new_bucket(faulty_moto)
    faulty_moto.proxy.delay(0.7, times=None, op="UploadPart")
    mount = mount_factory(faulty_moto, bucket, SMALL_PARTS).mount()
    data = os.urandom(40 * MiB)
    writer = write_in_thread(mount.mountpoint / "big.bin", data)
    seen = []
    try:
        while writer.is_alive() or not seen:
            for upload in snapshot(mount)["uploads"]["in_flight"]:
                if upload["path"] == "big.bin":
                    seen.append((upload["bytes_sent"], upload["parts_done"], upload["kind"]))
            if not writer.is_alive():
                break
            time.sleep(0.3)
    finally:
        writer.join()
    assert seen and all(kind == "multipart" for _, _, kind in seen), seen
    sent = [s for s, _, _ in seen]
    assert sent == sorted(sent) and sent[-1] > sent[0], seen
    assert max(p for _, p, _ in seen) >= 2
    # Shown to a person too, and done once the file is closed.
    after = snapshot_by_command(mount)
    assert after["uploads"]["in_flight"] == []
    assert after["durable"]["big.bin"]["size"] == len(data)
    text = status(mount).stdout
    assert "big.bin" in text and "40.0 MiB" in text


def test_dirty_bytes_go_back_to_zero_after_fsync(moto_server, mount_factory):
    bucket = new_bucket(moto_server)
    mount = mount_factory(moto_server, bucket).mount()
    fd = os.open(mount.mountpoint / "dirty.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"d" * 300_000)
        before = snapshot(mount)
        assert before["dirty"] == {"files": 1, "bytes": 300_000}
        assert before["uploads"]["queued"] == 1
        assert "dirty.txt" not in before["durable"]
        os.fsync(fd)
        after = snapshot(mount)
        assert after["dirty"] == {"files": 0, "bytes": 0}
        assert after["durable"]["dirty.txt"]["size"] == 300_000
        assert after["durable"]["dirty.txt"]["time"] >= before["started"]
    finally:
        os.close(fd)
    assert "dirty: 0 file(s), 0 B" in status(mount).stdout


def test_data_cache_reads_are_counted(moto_server, mount_factory):
    """A random reader's reads, once the background fill has the bytes, are answered by the
    cache file (each read at a new offset: the kernel's page cache answers repeats itself)."""
    bucket = new_bucket(moto_server)
    moto_server.client().put_object(Bucket=bucket, Key="random.bin", Body=os.urandom(3 * MiB))
    mount = mount_factory(moto_server, bucket).mount()
    fd = os.open(mount.mountpoint / "random.bin", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(fd, 4096, MiB)
        data = snapshot(mount)["caches"]["data"]
        assert data["misses"] >= 1 and data["entries"] == 1
        offsets = iter(range(2 * MiB, 3 * MiB, 8192))
        assert wait_for(lambda: os.pread(fd, 4096, next(offsets))
                        and snapshot(mount)["caches"]["data"]["hits"] >= 1, what="a cache hit")
    finally:
        os.close(fd)
    assert "% hits" in status(mount).stdout.split("caches:")[1].split("\n")[0]


def test_a_failing_store_shows_retries_and_the_last_error(faulty_moto, mount_factory):
    bucket = new_bucket(faulty_moto)
    mount = mount_factory(faulty_moto, bucket, ["retries=3"]).mount()
    rule = faulty_moto.proxy.error(503, "SlowDown", times=2, op="PutObject")
    (mount.mountpoint / "retried.txt").write_bytes(b"made it")
    assert faulty_moto.proxy.hits(rule) == 2
    s3 = snapshot(mount)
    assert s3["s3"]["retries"]["PutObject"] == 2
    assert s3["s3"]["requests"]["PutObject"]["status"] == {"503": 2, "200": 1}
    errors = [e for e in s3["errors"] if e["op"] == "PutObject"]
    assert errors and "503" in errors[-1]["error"] and errors[-1]["path"] == "retried.txt"
    assert errors[-1]["time"] <= time.time()
    text = status(mount).stdout
    assert "last errors" in text and "503" in text and "retries:2" in text


def test_metrics_match_what_the_store_saw(faulty_moto, mount_factory):
    bucket = new_bucket(faulty_moto)
    port = free_port()
    faulty_moto.proxy.clear()
    mount = mount_factory(faulty_moto, bucket, [f"metrics={port}", "watch=*.rdb"]).mount()
    sizes = {"a.txt": 1000, "b.bin": 3 * MiB, "dump.rdb": 123_456}
    for name, size in sizes.items():
        (mount.mountpoint / name).write_bytes(os.urandom(size))
    assert len((mount.mountpoint / "b.bin").read_bytes()) == 3 * MiB  # a GET (nothing cached)
    # The gauges and cache counters are sampled once a second.
    stat = ('ocifs_cache_hits_total{cache="stat"}', 'ocifs_cache_misses_total{cache="stat"}')
    metrics = wait_for(lambda: (lambda m: m if m[stat[0]] + m[stat[1]] > 0 else None)(scrape(port)),
                       what="the cache counters")
    seen: dict[str, int] = {}
    for op, _, _, action in faulty_moto.proxy.requests():
        assert action == "pass"
        seen[op] = seen.get(op, 0) + 1
    counted: dict[str, int] = {}
    for name, value in metrics.items():
        if name.startswith("ocifs_s3_requests_total{"):
            op = name.split('op="')[1].split('"')[0]
            counted[op] = counted.get(op, 0) + int(value)
    # The mount's check of the bucket, before it started counting, is the one difference.
    seen["ListObjectsV2"] -= 1
    assert counted == {op: n for op, n in seen.items() if n}
    assert metrics["ocifs_uploaded_bytes_total"] == sum(sizes.values())
    assert metrics["ocifs_downloaded_bytes_total"] == 3 * MiB
    assert metrics["ocifs_dirty_bytes"] == 0 and metrics["ocifs_uploads_in_flight"] == 0
    assert metrics['ocifs_fuse_ops_total{errno="ok",op="create"}'] == 3
    assert metrics['ocifs_fuse_op_seconds_count{op="create"}'] == 3
    stamp = metrics['ocifs_last_upload_timestamp_seconds{path="dump.rdb"}']
    assert time.time() - 120 < stamp <= time.time()
    assert not any("a.txt" in name for name in metrics)  # not watched


def test_metrics_are_off_by_default_and_a_bad_address_is_refused(moto_server, mount_factory,
                                                                  tmp_path):
    bucket = new_bucket(moto_server)
    mount = mount_factory(moto_server, bucket)
    mount.options.append("metrics=99999")
    result = subprocess.run(mount.argv(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "metrics=99999" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        mount.options[-1] = f"metrics={busy.getsockname()[1]}"
        result = subprocess.run(mount.argv(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "cannot listen" in result.stderr, result.stderr
    assert not os.path.ismount(mount.mountpoint)


def test_status_and_metrics_never_show_the_secret_key(moto_server, mount_factory):
    bucket = new_bucket(moto_server)
    port = free_port()
    mount = mount_factory(moto_server, bucket, [f"metrics={port}"]).mount()
    (mount.mountpoint / "f.txt").write_bytes(b"x")
    outputs = [status(mount).stdout, status(mount, "--json").stdout,
               subprocess.run([*OCIFS, "status"], capture_output=True, text=True).stdout,
               urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()]
    assert bucket in outputs[0] and moto_server.endpoint_url in outputs[0]
    for text in outputs:
        assert moto_server.secret_key not in text
        assert "f.txt" in text or "ocifs_" in text


def test_status_check(faulty_moto, mount_factory):
    bucket = new_bucket(faulty_moto)
    mount = mount_factory(faulty_moto, bucket, SMALL_PARTS).mount()
    check = lambda *extra: status(mount, "--check", "--timeout", "3", *extra)  # noqa: E731

    healthy = check()
    assert healthy.returncode == 0, healthy.stderr

    # --max-age: no dump.rdb yet (the mount is older than 1 s), then a fresh one, then stale.
    time.sleep(1.2)
    stale = check("--max-age", "dump.rdb=1")
    assert stale.returncode == 1 and "dump.rdb" in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1
    assert check("--max-age", "dump.rdb=600").returncode == 0  # the mount is too young to judge
    (mount.mountpoint / "dump.rdb").write_bytes(b"REDIS0011")
    assert check("--max-age", "dump.rdb=60").returncode == 0
    time.sleep(1.5)
    old = check("--max-age", "*.rdb=1")
    assert old.returncode == 1 and "ago" in old.stderr, old.stderr

    # A stuck upload: its parts stall in the store.
    rule = faulty_moto.proxy.stall(op="UploadPart", times=None)
    # Written by a child: a file this process held open would be closed (so flushed, so
    # waited for) by every child that ``check`` starts.
    writer = subprocess.Popen(["dd", "if=/dev/urandom", f"of={mount.mountpoint / 'stuck.bin'}",
                               "bs=1M", "count=12"], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: faulty_moto.proxy.hits(rule), what="a stalled part")
        time.sleep(1.5)
        stuck = check("--stuck-after", "1")
        assert stuck.returncode == 1 and "stuck.bin" in stuck.stderr and "stuck" in stuck.stderr
        assert check("--stuck-after", "600").returncode == 0
    finally:
        faulty_moto.proxy.clear()
        assert writer.wait(timeout=120) == 0

    # The store is down.
    faulty_moto.proxy.down()
    try:
        time.sleep(11)  # longer than the mount's "answered recently"
        down = check()
        assert down.returncode == 1 and "store" in down.stderr, down.stderr
    finally:
        faulty_moto.proxy.up()
    assert check().returncode == 0


def test_the_container_healthcheck_takes_its_max_age_from_the_environment(moto_server,
                                                                          mount_factory):
    bucket = new_bucket(moto_server)
    mount = mount_factory(moto_server, bucket).mount()
    time.sleep(1.2)

    def health(max_age: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "OCIFS_HEALTH_MAX_AGE": max_age}
        return subprocess.run([*OCIFS, "healthcheck", str(mount.mountpoint)], env=env,
                              capture_output=True, text=True, timeout=60)

    assert health("").returncode == 0
    failed = health("dump.rdb=1")
    assert failed.returncode == 1 and "dump.rdb" in failed.stderr
    (mount.mountpoint / "dump.rdb").write_bytes(b"REDIS")
    assert health("dump.rdb=60 *.aof=600").returncode == 0
    assert health("nonsense").returncode == 1


def test_status_check_needs_a_live_mount(tmp_path):
    result = subprocess.run([*OCIFS, "status", "--check", str(tmp_path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1 and "no running ocifs mount" in result.stderr
    result = subprocess.run([*OCIFS, "status", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "no running ocifs mount" in result.stderr
    bad = subprocess.run([*OCIFS, "status", "--check", str(tmp_path), "--max-age", "x"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "--max-age" in bad.stderr


def test_the_control_socket_is_the_owners_only(moto_server, mount_factory, dev_fuse_for_everyone):
    if shutil.which("runuser") is None:
        pytest.skip("runuser (util-linux) is not installed")
    bucket = new_bucket(moto_server)
    mount = mount_factory(moto_server, bucket).mount()
    path = control.socket_path(str(mount.mountpoint))
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    connect = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
               "print('connected')")
    other = subprocess.run(["runuser", "-u", "nobody", "--", sys.executable, "-c", connect,
                            str(path)], capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and "connected" not in other.stdout
    assert "Permission denied" in other.stderr, other.stderr
    nobody = pwd.getpwnam("nobody")
    asked = subprocess.run(["runuser", "-u", "nobody", "--", *OCIFS, "status",
                            str(mount.mountpoint)], capture_output=True, text=True, timeout=60,
                           env={"PATH": os.environ["PATH"], "HOME": "/"})
    assert asked.returncode == 1 and bucket not in asked.stdout, (asked.stdout, nobody)
    assert snapshot(mount)["bucket"] == bucket  # its owner (root) can
    mount.umount()
    assert not path.parent.exists()  # the state directory goes with the mount


def test_progress_lines_while_sigterm_flushes_a_large_dirty_file(faulty_moto, mount_factory):
    bucket = new_bucket(faulty_moto)
    faulty_moto.proxy.delay(1.0, times=None, op="UploadPart")
    mount = mount_factory(faulty_moto, bucket, SMALL_PARTS)
    proc = mount.start_foreground()
    try:
        fd = os.open(mount.mountpoint / "big.rdb", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 40 * MiB)  # dirty, nothing sent yet
            os.write(fd, b"head")
            assert snapshot(mount)["dirty"]["bytes"] == 40 * MiB
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=180) == 0
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [l for l in mount.log_text().splitlines() if "stopping:" in l and "left" in l]
    assert len(lines) >= 2, mount.log_text()
    assert "MiB left in 1 file(s)" in lines[0] and "/s" in lines[0]
    assert faulty_moto.client().head_object(Bucket=bucket, Key="big.rdb")["ContentLength"] == 40 * MiB


def dirty_after_a_failed_close(faulty_moto, mount, name: str, size: int) -> None:
    """A file whose upload failed at close stays dirty: the unmount uploads it."""
    rule = faulty_moto.proxy.error(500, times=None, op="PutObject")
    with pytest.raises(OSError):
        with open(mount.mountpoint / name, "wb") as f:
            f.write(os.urandom(size))
    assert faulty_moto.proxy.hits(rule)
    faulty_moto.proxy.clear()
    assert snapshot(mount)["dirty"] == {"files": 1, "bytes": size}


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
def test_umount_shows_the_uploads_it_waits_for(faulty_moto, mount_factory, tmp_path, terminal):
    bucket = new_bucket(faulty_moto)
    cache = tmp_path / "cache"
    cache.mkdir()
    # Single PUTs, slowed down: the unmount's upload takes seconds.
    mount = mount_factory(faulty_moto, bucket, ["retries=0", f"use_cache={cache}",
                                           "multipart_threshold=100"]).mount()
    dirty_after_a_failed_close(faulty_moto, mount, "late.bin", 20 * MiB)
    faulty_moto.proxy.delay(7.0, times=1, op="PutObject")
    argv = [*OCIFS, "umount", str(mount.mountpoint)]
    if terminal:  # a pseudo-terminal, as a person at a shell has
        argv = ["script", "-qec", " ".join(argv), "/dev/null"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    if terminal:
        assert "uploading before exit" in shown and "MiB" in shown and "━" in shown, shown
    else:
        lines = [l for l in result.stderr.splitlines() if "uploading before exit" in l]
        assert lines and "20.0 MiB left in 1 file(s)" in lines[0], result.stderr
    assert faulty_moto.client().head_object(Bucket=bucket, Key="late.bin")["ContentLength"] == 20 * MiB


def test_a_redis_style_save_makes_dump_rdb_durable(moto_server, mount_factory):
    """Redis writes temp-PID.rdb, then renames it over dump.rdb: the rename (a server-side
    copy) is when dump.rdb became durable, with the size that was written."""
    bucket = new_bucket(moto_server)
    mount = mount_factory(moto_server, bucket).mount()
    for n, size in enumerate((1000, 2500)):
        (mount.mountpoint / f"temp-{n}.rdb").write_bytes(os.urandom(size))
        os.rename(mount.mountpoint / f"temp-{n}.rdb", mount.mountpoint / "dump.rdb")
        durable = snapshot(mount)["durable"]
        assert durable["dump.rdb"]["size"] == size
        assert not any(path.startswith("temp-") for path in durable)
