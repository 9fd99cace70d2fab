"""The client scenario with redis-py (Debian's python3-redis).

Authenticate, load a handler, apply across keys, pipeline 1000 commands,
page through a search, provoke errors. Run by e2e/clients_test.go against a
fresh legion-server started with --requirepass; LEGION_ADDR,
LEGION_PASSWORD and LEGION_HANDLER say where and what.
"""
import os
import re
import sys

import redis

host, port = os.environ["LEGION_ADDR"].rsplit(":", 1)
password = os.environ["LEGION_PASSWORD"]
with open(os.environ["LEGION_HANDLER"]) as f:
    src = f.read()


def expect_error(pattern, fn, *args):
    try:
        fn(*args)
    except redis.exceptions.ResponseError as e:
        assert re.search(pattern, str(e)), f"{args}: error {e!r} does not match {pattern!r}"
        return
    except redis.exceptions.AuthenticationError as e:
        assert re.search(pattern, str(e)), f"{args}: error {e!r} does not match {pattern!r}"
        return
    raise AssertionError(f"{args}: no error, want {pattern!r}")


anon = redis.Redis(host=host, port=int(port), decode_responses=True)
expect_error(r"Authentication required", anon.execute_command, "LEGION.GET", "x")
expect_error(r"invalid username-password pair", anon.execute_command, "AUTH", "wrong")
anon.close()

r = redis.Redis(host=host, port=int(port), password=password, decode_responses=True,
                client_name="redis-py-scenario")
sha = r.script_load(src)
assert re.fullmatch(r"[0-9a-f]{40}", sha), sha

for i in range(20):
    assert r.execute_command("LEGION.APPLY", f"py:{i}", "incr") == 1
assert r.execute_command("LEGION.APPLY", "py:0", "incr", "FAST") == 2

p = r.pipeline(transaction=False)
for i in range(1000):
    p.execute_command("LEGION.APPLY", f"pipe:{i % 100}", "incr")
res = p.execute()
assert len(res) == 1000
for i, v in enumerate(res):
    assert v == i // 100 + 1, (i, v)

seen = []
page = r.execute_command("LEGION.SEARCH", "count:", "COUNT", 7)
while page:
    seen.extend(tuple(x) for x in page)
    tag, key = page[-1]
    page = r.execute_command("LEGION.SEARCH", tag, "AFTER", key, "COUNT", 7)
expected = [("count:10", f"pipe:{i}") for i in range(100)]
expected += [("count:1", f"py:{i}") for i in range(1, 20)]
expected.append(("count:2", "py:0"))
expected.sort(key=lambda tk: (tk[0].encode(), tk[1].encode()))
assert seen == expected, (seen[:5], expected[:5])
assert r.execute_command("LEGION.SEARCH", "count:2", "EXACT") == [["count:2", "py:0"]]

expect_error(r"unknown command 'NOSUCH', with args beginning with: 'a'", r.execute_command, "NOSUCH", "a")
expect_error(r"wrong number of arguments for 'legion.apply' command", r.execute_command, "LEGION.APPLY", "k")
expect_error(r"script: apply: handler:\d+: unknown event", r.execute_command, "LEGION.APPLY", "py:1", "bogus")
expect_error(r"value is not an integer or out of range", r.execute_command, "LEGION.SEARCH", "t", "COUNT", "x")
expect_error(r"script", r.script_load, "function apply(")
assert r.ping() is True
assert r.client_getname() == "redis-py-scenario"
assert r.execute_command("LEGION.GET", "py:1") == '{"count":1}'
assert r.execute_command("LEGION.GET", "missing") is None
assert r.dbsize() == 120
assert r.info("keyspace")["db0"]["keys"] == 120
assert r.info()["legion_version"]
r.close()
print("redis-py scenario passed")
sys.exit(0)
