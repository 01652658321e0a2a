"""One batch as one atomic Redis script: every queue gets its events, or none does.

A ``MULTI … EXEC`` applies the commands that succeed and reports the others:
a queue key of the wrong type (``WRONGTYPE``) used to lose its events while the
checkpoint moved past them. The script below first checks everything that could
refuse a write — the checkpoint is still the one this sink read (compare and
set, so a late batch of an earlier connection cannot be applied twice), every
queue key is a list (a stream for ``format: stream``) or absent,
``resque:queues`` is a set or absent — and only then pushes (``RPUSH``, or one
``XADD <key> MAXLEN ~ <max_length> * type <type> event <json>`` per event),
trims, adds and sets the checkpoint. Redis runs a script atomically, so a
refused batch writes nothing. A stream the script creates gets its consumer
groups first (``XGROUP CREATE … 0 MKSTREAM``), so a stream lost with its
groups (Redis restarted empty) is re-made with them before any entry.

Each queue's reply is ``[length, trimmed]`` after the batch.

The checkpoint value is ``<position>:<epoch>``: the journal's identity travels
with the position (see ``Journal.epoch``). A plain integer (written by earlier
versions) is still read.
"""

from __future__ import annotations

import hashlib
import re

import attrs

__all__ = ["SCRIPT", "SCRIPT_SHA", "QueueWrite", "encode_batch", "checkpoint_value", "parse_checkpoint",
           "resume_point", "MOVED", "REFUSED"]

MOVED = "FLAMINGO-MOVED"  # error prefix: the checkpoint is not the one this sink read
REFUSED = "WRONGTYPE"  # error prefix: a key this batch writes holds another type

SCRIPT = b"""
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then
  return redis.error_reply('FLAMINGO-MOVED the checkpoint is ' .. tostring(cur) .. ', expected ' .. ARGV[1])
end
local nq = tonumber(ARGV[3])
local kinds = ARGV[4]
for i = 2, #KEYS do
  local t = redis.call('TYPE', KEYS[i])['ok']
  local want = 'list'
  if i == nq + 2 then want = 'set'
  elseif string.sub(kinds, i - 1, i - 1) == 's' then want = 'stream' end
  if t ~= 'none' and t ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want)
  end
end
local out = {}
local a = 5
for i = 1, nq do
  local key = KEYS[i + 1]
  local n = tonumber(ARGV[a])
  local maxlen = ARGV[a + 1]
  local name = ARGV[a + 2]
  local ng = tonumber(ARGV[a + 3])
  local g0 = a + 4
  a = g0 + ng
  local stop = a + n - 1
  local len, trimmed = 0, 0
  if string.sub(kinds, i, i) == 's' then
    local before = 0
    if redis.call('EXISTS', key) == 0 then
      -- a new (or lost) stream: its groups exist before its first entry
      for g = g0, g0 + ng - 1 do redis.call('XGROUP', 'CREATE', key, ARGV[g], '0', 'MKSTREAM') end
    else
      before = redis.call('XLEN', key)
    end
    while a <= stop do
      local v = ARGV[a]
      local nl = string.find(v, '\\n', 1, true) or 0
      local etype, event = string.sub(v, 1, nl - 1), string.sub(v, nl + 1)
      if maxlen ~= '' then
        redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'type', etype, 'event', event)
      else
        redis.call('XADD', key, '*', 'type', etype, 'event', event)
      end
      a = a + 1
    end
    len = redis.call('XLEN', key)
    trimmed = math.max(0, before + n - len)
  else
    while a <= stop do
      local e = math.min(a + 999, stop)
      len = redis.call('RPUSH', key, unpack(ARGV, a, e))
      a = e + 1
    end
    if maxlen ~= '' and len > tonumber(maxlen) then
      redis.call('LTRIM', key, -tonumber(maxlen), -1)
      trimmed = len - tonumber(maxlen)
      len = tonumber(maxlen)
    end
  end
  if name ~= '' then redis.call('SADD', KEYS[nq + 2], name) end
  out[i] = {len, trimmed}
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2]) end
return out
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT).hexdigest().encode()

RESQUE_QUEUES = b"resque:queues"
_CHECKPOINT = re.compile(rb"\s*(\d{1,20})(?::([0-9a-f]{1,64}))?\s*")


@attrs.frozen
class QueueWrite:
    """The values one queue gets from a batch."""

    key: bytes
    values: list[bytes]
    max_length: int | None = None
    resque_name: bytes | None = None  # added to resque:queues
    #: a Redis stream (values are ``type\nevent``, one XADD each) instead of a list
    stream: bool = False
    groups: tuple[bytes, ...] = ()  # a stream's consumer groups, made with the stream


def checkpoint_value(position: int, epoch: str) -> bytes:
    return b"%d:%s" % (position, epoch.encode())


def parse_checkpoint(raw: bytes | None) -> tuple[int, str | None] | None:
    """``(position, epoch or None)``; None when absent. ValueError when it is not a checkpoint."""
    if raw is None:
        return None
    m = _CHECKPOINT.fullmatch(raw)
    if m is None:
        raise ValueError(f"not a checkpoint: {raw[:40]!r}")
    return int(m.group(1)), m.group(2).decode() if m.group(2) else None


def resume_point(stored: tuple[int, str | None], *, epoch: str, epoch_recorded: bool, first_seq: int,
                 last_seq: int, opened_last_seq: int, written_upto: int) -> tuple[int, str]:
    """Where to resume after a stored checkpoint ``(position, epoch)``, and what was found.

    ``"ok"``; ``"other_journal"``: the epoch differs from the journal's own (it was
    wiped or re-created): resume before the oldest event it holds; ``"adopted"``: the
    journal has no recorded epoch (an upgrade, journal.state lost): the position is
    trusted like an old plain integer; ``"rolled_back"``: the position is beyond what
    the journal held at start and beyond what this process wrote (the local disk lost
    events Redis had got): resume after the journal's last position at start, so new
    events reusing those positions are not skipped."""
    pos, theirs = stored
    verdict = "ok"
    if theirs is not None and theirs != epoch:
        if epoch_recorded:
            return min(first_seq - 1, last_seq), "other_journal"
        verdict = "adopted"
    trusted = max(opened_last_seq, written_upto)
    if pos > trusted:
        pos, verdict = trusted, "rolled_back"
    return min(pos, last_seq), verdict


def _bulk(parts: list[bytes], value: bytes) -> None:
    parts.append(b"$%d\r\n" % len(value))
    parts.append(value)
    parts.append(b"\r\n")


def encode_batch(checkpoint_key: bytes, expected: bytes, new: bytes | None,
                 writes: list[QueueWrite]) -> list[bytes]:
    """``EVALSHA`` of the script for one batch, RESP-encoded (the values are not copied)."""
    keys = [checkpoint_key] + [w.key for w in writes]
    if any(w.resque_name is not None for w in writes):
        keys.append(RESQUE_QUEUES)
    nargs = 4 + sum(4 + len(w.groups) + len(w.values) for w in writes)
    parts = [b"*%d\r\n" % (3 + len(keys) + nargs)]
    for head in (b"EVALSHA", SCRIPT_SHA, b"%d" % len(keys)):
        _bulk(parts, head)
    for k in keys:
        _bulk(parts, k)
    kinds = b"".join(b"s" if w.stream else b"l" for w in writes)
    for a in (expected, new or b"", b"%d" % len(writes), kinds):
        _bulk(parts, a)
    for w in writes:
        _bulk(parts, b"%d" % len(w.values))
        _bulk(parts, b"%d" % w.max_length if w.max_length is not None else b"")
        _bulk(parts, w.resque_name or b"")
        _bulk(parts, b"%d" % len(w.groups))
        for g in w.groups:
            _bulk(parts, g)
        for v in w.values:
            parts.append(b"$%d\r\n" % len(v))
            parts.append(v)
            parts.append(b"\r\n")
    return parts
