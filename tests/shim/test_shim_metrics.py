"""Stats: a cgroup's files as containerd's v1 or v2 Metrics (read from fake cgroup dirs)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pidsafe.shim import messages as m
from pidsafe.shim._metrics import MAX, metrics


def write(d: Path, files: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)


def test_v2(tmp_path: Path) -> None:
    d = tmp_path / "v2"
    write(d, {"pids.current": "3\n", "pids.max": "max\n",
              "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
              "memory.current": "4096\n", "memory.max": "max\n", "memory.swap.current": "0\n",
              "memory.stat": "anon 100\nfile 200\nnot_a_field 9\n",
              "memory.events": "low 0\nhigh 1\nmax 2\noom 3\noom_kill 4\n"})
    any_ = metrics(SimpleNamespace(v1_paths={}, v2_path=str(d)))
    assert any_.type_url == "io.containerd.cgroups.v2.Metrics"
    got = any_.unpack_as(m.CgroupsV2Metrics)
    assert (got.pids.current, got.pids.limit) == (3, 0)
    assert (got.cpu.usage_usec, got.cpu.user_usec, got.cpu.system_usec) == (1500, 1000, 500)
    assert (got.memory.usage, got.memory.usage_limit, got.memory.anon, got.memory.file) == \
        (4096, MAX, 100, 200)
    assert got.memory.swap_limit == 0                      # no such file: 0
    assert (got.memory_events.oom, got.memory_events.oom_kill) == (3, 4)


def test_v1(tmp_path: Path) -> None:
    mem, acct, pids = tmp_path / "memory", tmp_path / "cpuacct", tmp_path / "pids"
    write(mem, {"memory.usage_in_bytes": "8192\n", "memory.limit_in_bytes": "16384\n",
                "memory.max_usage_in_bytes": "9000\n", "memory.failcnt": "1\n",
                "memory.stat": "cache 10\nrss 20\npgfault 5\ntotal_cache 11\n"
                               "hierarchical_memsw_limit 77\n",
                "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
    write(acct, {"cpuacct.usage": "123456\n", "cpuacct.usage_percpu": "100 23456 \n",
                 "cpuacct.stat": "user 2\nsystem 1\n", "cpu.stat": "nr_periods 4\n"})
    write(pids, {"pids.current": "1\n", "pids.max": "50\n"})
    cg = SimpleNamespace(v1_paths={"memory": str(mem), "cpu,cpuacct": str(acct),
                                   "pids": str(pids)}, v2_path=str(tmp_path / "unified"))
    any_ = metrics(cg)
    assert any_.type_url == "io.containerd.cgroups.v1.Metrics"     # hybrid: v1, as runc's shim
    got = any_.unpack_as(m.CgroupsV1Metrics)
    assert (got.pids.current, got.pids.limit) == (1, 50)
    assert got.cpu.usage.total == 123456 and got.cpu.usage.per_cpu == [100, 23456]
    assert got.cpu.usage.user > got.cpu.usage.kernel > 0 and got.cpu.throttling.periods == 4
    mem_stat = got.memory
    assert (mem_stat.cache, mem_stat.rss, mem_stat.pg_fault, mem_stat.total_cache) == \
        (10, 20, 5, 11)
    assert mem_stat.hierarchical_swap_limit == 77
    assert (mem_stat.usage.usage, mem_stat.usage.limit, mem_stat.usage.max,
            mem_stat.usage.failcnt) == (8192, 16384, 9000, 1)
    assert got.memory_oom_control.oom_kill == 2
