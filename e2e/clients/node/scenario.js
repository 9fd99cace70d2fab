// The client scenario with ioredis: authenticate, load a handler, apply
// across keys, pipeline 1000 commands, page through a search, provoke
// errors. Run by e2e/clients_test.go against a fresh legion-server started
// with --requirepass; LEGION_ADDR, LEGION_PASSWORD and LEGION_HANDLER say
// where and what.
"use strict";
const assert = require("assert");
const fs = require("fs");
const Redis = require("ioredis");

const [host, port] = process.env.LEGION_ADDR.split(":");
const password = process.env.LEGION_PASSWORD;
const src = fs.readFileSync(process.env.LEGION_HANDLER, "utf8");

async function main() {
  // Without the password every command is refused; a wrong one is named.
  const anon = new Redis({ host, port, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: null });
  await anon.connect();
  await assert.rejects(anon.call("LEGION.GET", "x"), /NOAUTH Authentication required/);
  await assert.rejects(anon.auth("wrong"), /WRONGPASS/);
  anon.disconnect();

  const r = new Redis({ host, port, password, connectionName: "ioredis-scenario", maxRetriesPerRequest: 0 });
  const sha = await r.script("LOAD", src);
  assert.match(sha, /^[0-9a-f]{40}$/);

  for (let i = 0; i < 20; i++) {
    assert.strictEqual(await r.call("LEGION.APPLY", `io:${i}`, "incr"), 1);
  }
  assert.strictEqual(await r.call("LEGION.APPLY", "io:0", "incr", "FAST"), 2);

  // 1000 commands in one pipeline come back in order.
  const p = r.pipeline();
  for (let i = 0; i < 1000; i++) p.call("LEGION.APPLY", `pipe:${i % 100}`, "incr");
  const res = await p.exec();
  assert.strictEqual(res.length, 1000);
  res.forEach(([err, v], i) => {
    assert.ifError(err);
    assert.strictEqual(v, Math.floor(i / 100) + 1);
  });

  // Page through the index seven records at a time.
  const seen = [];
  let page = await r.call("LEGION.SEARCH", "count:", "COUNT", "7");
  while (page.length > 0) {
    seen.push(...page);
    const [tag, key] = page[page.length - 1];
    page = await r.call("LEGION.SEARCH", tag, "AFTER", key, "COUNT", "7");
  }
  const expected = [];
  for (let i = 0; i < 100; i++) expected.push(["count:10", `pipe:${i}`]);
  for (let i = 1; i < 20; i++) expected.push(["count:1", `io:${i}`]);
  expected.push(["count:2", "io:0"]);
  const sortKey = ([t, k]) => Buffer.concat([Buffer.from(t), Buffer.from([0]), Buffer.from(k)]);
  expected.sort((a, b) => Buffer.compare(sortKey(a), sortKey(b)));
  assert.deepStrictEqual(seen, expected);
  assert.deepStrictEqual(await r.call("LEGION.SEARCH", "count:2", "EXACT"), [["count:2", "io:0"]]);

  // Errors are errors, and the connection lives on.
  await assert.rejects(r.call("NOSUCH", "a"), /ERR unknown command 'NOSUCH', with args beginning with: 'a'/);
  await assert.rejects(r.call("LEGION.APPLY", "k"), /ERR wrong number of arguments for 'legion.apply' command/);
  await assert.rejects(r.call("LEGION.APPLY", "io:1", "bogus"), /ERR script: apply: handler:\d+: unknown event/);
  await assert.rejects(r.call("LEGION.SEARCH", "t", "COUNT", "x"), /ERR value is not an integer or out of range/);
  await assert.rejects(r.script("LOAD", "function apply("), /ERR script/);
  assert.strictEqual(await r.ping(), "PONG");
  assert.strictEqual(await r.client("GETNAME"), "ioredis-scenario");
  assert.strictEqual(await r.call("LEGION.GET", "io:1"), '{"count":1}');
  assert.strictEqual(await r.call("LEGION.GET", "missing"), null);
  assert.strictEqual(await r.dbsize(), 120);
  const info = await r.info("keyspace");
  assert.match(info, /db0:keys=120/);
  r.disconnect();
  console.log("ioredis scenario passed");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
