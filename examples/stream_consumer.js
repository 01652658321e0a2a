#!/usr/bin/env node
// Process a Flamingo `format: stream` subscription at least once, with ioredis.
//
//   npm install ioredis
//   node examples/stream_consumer.js tweets workers worker-1 [namespace] [claimIdleMs]
//
// Each entry of <ns>:stream:<name> has the fields `type` and `event` (the raw
// JSON as received). The entry is acknowledged (XACK) only after the work is
// done; a crashed consumer's entries stay pending: it re-reads its own on
// restart (id 0), and any consumer takes over entries pending longer than
// claimIdleMs (XAUTOCLAIM). At least once: make the work idempotent.
"use strict";
const Redis = require("ioredis");

const [subscription, group, consumer, namespace = "flamingo", claimIdle = "60000"] = process.argv.slice(2);
if (!consumer) {
  console.error("usage: stream_consumer.js SUBSCRIPTION GROUP CONSUMER [NAMESPACE] [CLAIM_IDLE_MS]");
  process.exit(2);
}
const redis = new Redis({ host: process.env.REDIS_HOST || "127.0.0.1", port: +(process.env.REDIS_PORT || 6379) });
const key = `${namespace}:stream:${subscription}`;

function fieldsOf(list) {
  const out = {};
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i]] = list[i + 1];
  return out;
}

async function work(type, event) {
  // the work; must be safe to repeat
  console.log(type, type === "tweet" ? (event.id_str || (event.data || {}).id) : "");
}

async function handle(entries) {
  for (const [id, fields] of entries) {
    if (fields) {
      const f = fieldsOf(fields);
      await work(f.type, JSON.parse(f.event));
    }
    await redis.xack(key, group, id); // only after the work
  }
  return entries.length;
}

async function main() {
  try {
    await redis.xgroup("CREATE", key, group, "$", "MKSTREAM");
  } catch (e) {
    if (!String(e.message).includes("BUSYGROUP")) throw e;
  }
  for (;;) { // this consumer's own unacknowledged entries first
    const mine = await redis.xreadgroup("GROUP", group, consumer, "COUNT", 100, "STREAMS", key, "0");
    if (!mine || !mine[0][1].length) break;
    await handle(mine[0][1]);
  }
  for (;;) {
    const [, claimed] = await redis.xautoclaim(key, group, consumer, +claimIdle, "0-0", "COUNT", 100);
    if (claimed.length) { await handle(claimed); continue; }
    const fresh = await redis.xreadgroup("GROUP", group, consumer, "COUNT", 100, "BLOCK", 1000,
                                         "STREAMS", key, ">");
    if (fresh) await handle(fresh[0][1]);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
