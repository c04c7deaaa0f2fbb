import pidsafe


def test_spawn_exit_status() -> None:
    p = pidsafe.spawn(["sh", "-c", "exit 3"])
    assert p.wait() == 3
    p.close()
