//! The Lua scripts behind every multi-key operation of [`super::RedisStore`].
//!
//! The scripts themselves are the `.lua` files next to this one (`lua/`), included at
//! compile time, so that they read (and highlight) as Lua; this file says what each
//! takes and answers. Each script is [`PRELUDE`] followed by a body. Every script touches keys of exactly one
//! tenant: `KEYS[1]` is the tenant's record key (so a cluster routes the call to the slot of
//! the tenant's hash tag) and `ARGV[1]` is the tenant's key prefix `sb:{t:<tenant>}:`, from
//! which the script names the other keys of the same tenant. They all share the hash tag,
//! so they live in the same slot and Redis Cluster runs the script on one node.
//!
//! Liveness: a node that writes connection, presence or subscription records into a tenant
//! owns them; `alive:<node>` (a string with a TTL the node refreshes) says it is alive,
//! `owned:<node>` (a set of references) lists its records, and `nodes` lists the nodes that
//! own records. `reap()` runs first in every script that reads or counts those records: it
//! removes every record of a node whose `alive` key has expired, in the same atomic step.

/// Helpers shared by the scripts. `\0` separates the parts of composite values.
pub(super) const PRELUDE: &str = include_str!("lua/prelude.lua");

/// ARGV: P. Deletes every key of the tenant; -1 when it does not exist, else the JSON of
/// its API key records (so the caller can drop them from the global index).
pub(super) const DELETE_TENANT: &str = include_str!("lua/delete_tenant.lua");

/// ARGV: P, suffix, field, value. HSETNX on an existing tenant: -1 not found, 0 conflict, 1 set.
pub(super) const HSET_NEW: &str = include_str!("lua/hset_new.lua");

/// ARGV: P, suffix. The values of a hash of an existing tenant; -1 when not found.
pub(super) const HVALS: &str = include_str!("lua/hvals.lua");

/// ARGV: P, suffix, field. Deletes a field of an existing tenant's hash: -1 not found, else
/// the deleted value or false.
pub(super) const HTAKE: &str = include_str!("lua/htake.lua");

/// Records that expire one by one (tickets, sessions): `<kind>` is a hash id → value and
/// `<kind>:exp` a sorted set id → expiry (unix ms, Redis's clock). Both keys carry a TTL
/// covering their newest record, so an idle tenant's vanish by themselves.
///
/// ARGV: P, kind, id, value, ttl ms. -1 when the tenant does not exist.
pub(super) const PUT_EXPIRING: &str = include_str!("lua/put_expiring.lua");

/// ARGV: P, kind, id, take ('1' removes it). The value if it has not expired; an expired
/// record is removed.
pub(super) const GET_EXPIRING: &str = include_str!("lua/get_expiring.lua");

/// Drops expired revocations; used by the revocation scripts.
const REVOCATIONS_CLEAN: &str = include_str!("lua/revocations_clean.lua");

/// ARGV: P, id, JSON, expires_at (unix seconds). -1 when the tenant does not exist.
pub(super) fn add_revocation() -> String {
    format!("{REVOCATIONS_CLEAN}{}", include_str!("lua/add_revocation.lua"))
}

/// ARGV: P. Unexpired revocations (JSON); -1 when the tenant does not exist.
pub(super) fn list_revocations() -> String {
    format!("{REVOCATIONS_CLEAN}{}", include_str!("lua/list_revocations.lua"))
}

/// ARGV: P, id. -1 when the tenant does not exist, else how many were deleted.
pub(super) const DELETE_REVOCATION: &str = include_str!("lua/delete_revocation.lua");

/// ARGV: P, node, ttl ms, conn id, sub, record JSON, max total, max per user.
/// -1 not found, 0 over a limit, 1 registered.
pub(super) const OPEN_CONNECTION: &str = include_str!("lua/open_connection.lua");

/// ARGV: P, conn id.
pub(super) const CLOSE_CONNECTION: &str = include_str!("lua/close_connection.lua");

/// ARGV: P. The live connection records (JSON); -1 when the tenant does not exist.
pub(super) const LIST_CONNECTIONS: &str = include_str!("lua/list_connections.lua");

/// ARGV: P, node, ttl ms, room, sub, conn id, has meta ('1'/'0'), meta JSON.
/// -1 not found, else {first connection of the user (0/1), members}.
pub(super) const PRESENCE_JOIN: &str = include_str!("lua/presence_join.lua");

/// ARGV: P, room, sub, conn id. {last connection of the user left (0/1), members}.
pub(super) const PRESENCE_LEAVE: &str = include_str!("lua/presence_leave.lua");

/// ARGV: P, room. -1 not found, else {HGETALL counts, HGETALL metas}.
pub(super) const PRESENCE: &str = include_str!("lua/presence.lua");

/// ARGV: P. -1 not found, else HGETALL room → subscribers.
pub(super) const ROOMS: &str = include_str!("lua/rooms.lua");

/// ARGV: P, node, ttl ms, room, conn id. -1 not found, else 1.
pub(super) const ROOM_SUBSCRIBE: &str = include_str!("lua/room_subscribe.lua");

/// ARGV: P, room, conn id.
pub(super) const ROOM_UNSUBSCRIBE: &str = include_str!("lua/room_unsubscribe.lua");

/// ARGV: P, messages_in, messages_out, handshakes_refused (increments). A missing tenant
/// is a no-op.
pub(super) const ADD_STATS: &str = include_str!("lua/add_stats.lua");

/// ARGV: P. -1 not found, else {connections, rooms, messages_in, messages_out, handshakes_refused}.
pub(super) const STATS: &str = include_str!("lua/stats.lua");

/// ARGV: P, node, ttl ms. Refreshes the node's liveness in the tenant: -1 when the tenant
/// is gone, 0 when the node's key had expired (or never existed), 1 refreshed.
pub(super) const HEARTBEAT: &str = include_str!("lua/heartbeat.lua");

/// ARGV: P, node. Removes every record the node owns in the tenant, and its liveness key
/// (and its hold on the webhook outbox, so another node takes over at once).
pub(super) const GOODBYE: &str = include_str!("lua/goodbye.lua");

/// ARGV: P, node, lease ms, max. Takes up to `max` events from the tenant's webhook
/// outbox for this node: one node at a time holds the outbox (`hooks:lease`, renewed by
/// every take), so the events of a tenant leave in their order. Reaps first, so a dead
/// node's rooms are vacated (and announced) even when no other script runs in the tenant.
/// -1 when the tenant does not exist; `{}` when another node holds the outbox.
pub(super) const HOOKS_TAKE: &str = include_str!("lua/hooks_take.lua");

/// ARGV: P, on ('1'/'0'). Switches the tenant's webhook outbox on or off (off empties it).
pub(super) const HOOKS_SWITCH: &str = include_str!("lua/hooks_switch.lua");

/// ARGV: P, name, room, user, conn, code. Records an event no store transition makes
/// (`session.ended`).
pub(super) const HOOKS_PUSH: &str = include_str!("lua/hooks_push.lua");

/// On the global API key index: KEYS[1] = `sb:apikeys`, ARGV: hash, expected value.
/// Removes the entry only if it still holds the expected value. Needs no prelude.
pub(super) const INDEX_DEL_IF: &str = include_str!("lua/index_del_if.lua");
