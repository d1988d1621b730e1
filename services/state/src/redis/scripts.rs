//! The loaded form of the Lua scripts (`lua`): each with its SHA1, loaded on first use and
//! again after a server restart.

use fred::types::scripts::Script;

use super::lua;

/// One Lua script with its SHA1, loaded on first use (and again after a server restart).
pub(super) struct Lua {
    pub(super) script: Script,
    pub(super) source: String,
}

impl Lua {
    pub(super) fn new(body: &str) -> Lua {
        Lua::raw(format!("{}\n{}", lua::PRELUDE, body))
    }

    pub(super) fn raw(source: String) -> Lua {
        Lua { script: Script::from_lua(source.clone()), source }
    }
}

pub(super) struct Scripts {
    pub(super) delete_tenant: Lua,
    pub(super) hset_new: Lua,
    pub(super) hvals: Lua,
    pub(super) htake: Lua,
    pub(super) put_expiring: Lua,
    pub(super) get_expiring: Lua,
    pub(super) add_revocation: Lua,
    pub(super) list_revocations: Lua,
    pub(super) delete_revocation: Lua,
    pub(super) open_connection: Lua,
    pub(super) close_connection: Lua,
    pub(super) list_connections: Lua,
    pub(super) presence_join: Lua,
    pub(super) presence_leave: Lua,
    pub(super) presence: Lua,
    pub(super) rooms: Lua,
    pub(super) room_subscribe: Lua,
    pub(super) room_unsubscribe: Lua,
    pub(super) add_stats: Lua,
    pub(super) stats: Lua,
    pub(super) heartbeat: Lua,
    pub(super) goodbye: Lua,
    pub(super) index_del_if: Lua,
    pub(super) hooks_take: Lua,
    pub(super) hooks_switch: Lua,
    pub(super) hooks_push: Lua,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            delete_tenant: Lua::new(lua::DELETE_TENANT),
            hset_new: Lua::new(lua::HSET_NEW),
            hvals: Lua::new(lua::HVALS),
            htake: Lua::new(lua::HTAKE),
            put_expiring: Lua::new(lua::PUT_EXPIRING),
            get_expiring: Lua::new(lua::GET_EXPIRING),
            add_revocation: Lua::new(&lua::add_revocation()),
            list_revocations: Lua::new(&lua::list_revocations()),
            delete_revocation: Lua::new(lua::DELETE_REVOCATION),
            open_connection: Lua::new(lua::OPEN_CONNECTION),
            close_connection: Lua::new(lua::CLOSE_CONNECTION),
            list_connections: Lua::new(lua::LIST_CONNECTIONS),
            presence_join: Lua::new(lua::PRESENCE_JOIN),
            presence_leave: Lua::new(lua::PRESENCE_LEAVE),
            presence: Lua::new(lua::PRESENCE),
            rooms: Lua::new(lua::ROOMS),
            room_subscribe: Lua::new(lua::ROOM_SUBSCRIBE),
            room_unsubscribe: Lua::new(lua::ROOM_UNSUBSCRIBE),
            add_stats: Lua::new(lua::ADD_STATS),
            stats: Lua::new(lua::STATS),
            heartbeat: Lua::new(lua::HEARTBEAT),
            goodbye: Lua::new(lua::GOODBYE),
            index_del_if: Lua::raw(lua::INDEX_DEL_IF.to_string()),
            hooks_take: Lua::new(lua::HOOKS_TAKE),
            hooks_switch: Lua::new(lua::HOOKS_SWITCH),
            hooks_push: Lua::new(lua::HOOKS_PUSH),
        }
    }
}
