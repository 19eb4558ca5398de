//! `Snapshot`: the model plus everything built from it to serve requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::balance::{Balancer, Member, Schedule};
use crate::model::{
    Backend, BackendName, BackendTimeouts, FrontendLimits, FrontendName, FrontendTimeouts,
    HeaderRules, Redirect, RequestView, Respond, ServerAddress, Target, Topology,
};
use crate::state::TlsCounters;
use crate::state::{Counters, Health, ServerState, StateRegistry};
use crate::upstream::{PoolRegistry, ServerPool, UpstreamTls};

/// How long an upstream connection may sit idle in a pool; below the common
/// server keep-alive timeouts (5 s in Node.js, 60 s in nginx).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// An immutable, validated topology ready to serve. Loaded once per request;
/// replaced whole by the reload writer.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts up with every swap.
    pub generation: u64,
    pub topology: Arc<Topology>,
    pub frontends: Box<[FrontendPlan]>,
    pub backends: Box<[BackendPlan]>,
}

#[derive(Debug)]
pub struct FrontendPlan {
    pub name: FrontendName,
    pub listen: SocketAddr,
    pub routes: Box<[RoutePlan]>,
    /// Some route matches on the host: only then is a request's host
    /// worked out for routing.
    pub routes_on_host: bool,
    pub default_target: Option<TargetPlan>,
    pub forward_headers: bool,
    pub timeouts: FrontendTimeouts,
    pub limits: FrontendLimits,
    /// Totals of the frontend (requests, responses by class, bytes).
    pub counters: Arc<Counters>,
    /// Terminates TLS with this config; `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Handshake counters, kept across reloads by name.
    pub tls_counters: Arc<TlsCounters>,
    /// `Strict-Transport-Security` sent on every response of a TLS frontend.
    pub hsts: Option<HeaderValue>,
    /// A plain frontend with `redirect_https`: the port part of the
    /// `https://` target (`""` for 443, else `":8443"`).
    pub redirect_https: Option<Box<str>>,
}

#[derive(Debug)]
pub struct RoutePlan {
    pub route: crate::model::Route,
    pub target: TargetPlan,
}

/// A route's target with its split schedule built.
#[derive(Debug)]
pub enum TargetPlan {
    /// Index into `Snapshot::backends`.
    Backend(usize),
    Split {
        backends: Box<[usize]>,
        schedule: Schedule,
    },
    /// Answered by the proxy itself.
    Redirect(Redirect),
    Respond(Respond),
    Deny,
}

/// The route a request took (`None`: the frontend's default) and its target.
#[derive(Debug, Clone, Copy)]
pub struct Chosen<'a> {
    pub route: Option<&'a RoutePlan>,
    pub target: &'a TargetPlan,
}

#[derive(Debug)]
pub struct BackendPlan {
    pub name: BackendName,
    pub balancer: Balancer,
    /// Parallel to `balancer.members()`.
    pub servers: Box<[ServerPlan]>,
    /// The `Host` sent to the servers instead of the client's.
    pub host: Option<HeaderValue>,
    pub timeouts: BackendTimeouts,
    pub retries: u32,
    pub cookie: Option<CookiePlan>,
    pub passive_fall: Option<u32>,
    pub drain_to_maint: bool,
    /// Largest request body in bytes; larger gets 413.
    pub max_body: u64,
    /// Applied before a route's own rules.
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
}

#[derive(Debug)]
pub struct ServerPlan {
    pub state: Arc<ServerState>,
    pub address: ServerAddress,
    /// `None` while the server's name does not resolve.
    pub pool: Option<Arc<ServerPool>>,
    /// The opaque id in the sticky cookie.
    pub cookie_id: Box<str>,
    /// TLS towards this server when its backend asks for it.
    pub tls: Option<UpstreamTls>,
}

#[derive(Debug)]
pub struct CookiePlan {
    pub name: Box<str>,
    /// `Set-Cookie` values per server, parallel to `BackendPlan::servers`.
    pub set_cookie: Box<[HeaderValue]>,
    /// The same with `Secure`, for TLS frontends.
    pub set_cookie_secure: Box<[HeaderValue]>,
}

impl Snapshot {
    /// Builds a snapshot; `resolved` maps server addresses with host names to
    /// their current address (`None`: does not resolve).
    pub fn build(
        generation: u64,
        topology: Arc<Topology>,
        resolved: &HashMap<ServerAddress, Option<SocketAddr>>,
        registry: &StateRegistry,
        pools: &PoolRegistry,
    ) -> Snapshot {
        let backends: Box<[BackendPlan]> = topology
            .backends
            .iter()
            .map(|b| build_backend(b, resolved, registry, pools))
            .collect();
        // Redirects go to the first TLS frontend's port.
        let https_port = topology
            .frontends
            .iter()
            .find(|f| f.tls.is_some())
            .map_or(443, |f| f.listen.port());
        let https_port: Box<str> = match https_port {
            443 => "".into(),
            port => format!(":{port}").into(),
        };
        let frontends = topology
            .frontends
            .iter()
            .map(|f| FrontendPlan {
                name: f.name.clone(),
                listen: f.listen,
                routes: f
                    .routes
                    .iter()
                    .map(|r| RoutePlan {
                        route: r.clone(),
                        target: build_target(&r.target),
                    })
                    .collect(),
                routes_on_host: f.routes.iter().any(|r| r.host.is_some()),
                default_target: f.default_target.as_ref().map(build_target),
                forward_headers: f.forward_headers,
                timeouts: f.timeouts,
                limits: f.limits,
                counters: registry.frontend(&f.name),
                tls: f.tls.as_ref().and_then(super::tls::server_config),
                tls_counters: registry.frontend_tls(&f.name),
                hsts: f
                    .tls
                    .as_ref()
                    .and_then(|t| t.hsts.as_deref())
                    .and_then(|h| HeaderValue::from_str(h).ok()),
                redirect_https: f.redirect_https.then(|| https_port.clone()),
            })
            .collect();
        Snapshot {
            generation,
            topology,
            frontends,
            backends,
        }
    }

    /// Drops the live state and idle connections of servers this snapshot
    /// no longer has; called once it is the running snapshot.
    pub fn forget_removed(&self, registry: &StateRegistry, pools: &PoolRegistry) {
        registry.retain(&self.topology);
        pools.retain(|b, s, a| {
            self.backends.iter().any(|bp| {
                bp.name == *b
                    && bp.servers.iter().any(|sp| {
                        sp.state.server == *s && sp.pool.as_ref().is_some_and(|p| p.addr == a)
                    })
            })
        });
    }

    /// The frontend with this name.
    pub fn frontend(&self, name: &FrontendName) -> Option<&FrontendPlan> {
        self.frontends.iter().find(|f| f.name == *name)
    }

    /// The backend with this name and its index.
    pub fn backend(&self, name: &str) -> Option<(usize, &BackendPlan)> {
        self.backends
            .iter()
            .enumerate()
            .find(|(_, b)| &*b.name == name)
    }
}

impl FrontendPlan {
    /// The first matching route, else the default target.
    pub fn route(&self, request: &RequestView<'_>) -> Option<Chosen<'_>> {
        match self.routes.iter().find(|r| r.route.matches(request)) {
            Some(r) => Some(Chosen {
                route: Some(r),
                target: &r.target,
            }),
            None => self.default_target.as_ref().map(|target| Chosen {
                route: None,
                target,
            }),
        }
    }
}

impl TargetPlan {
    /// The backend to use: a split takes turns by weight, passing over
    /// backends for which `has_server` is false. `None` for the targets the
    /// proxy answers itself.
    pub fn backend(&self, has_server: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            TargetPlan::Backend(b) => Some(*b),
            TargetPlan::Redirect(_) | TargetPlan::Respond(_) | TargetPlan::Deny => None,
            TargetPlan::Split { backends, schedule } => schedule
                .next(|i| has_server(backends[i]))
                .or_else(|| schedule.next(|_| true))
                .map(|i| backends[i]),
        }
    }
}

impl BackendPlan {
    /// The server a sticky cookie value names, if any.
    pub fn server_by_cookie(&self, id: &str) -> Option<usize> {
        self.servers.iter().position(|s| &*s.cookie_id == id)
    }

    /// Whether any server could take a new request now.
    pub fn has_eligible_server(&self) -> bool {
        self.servers
            .iter()
            .any(|s| crate::balance::is_eligible(&s.state))
    }
}

fn build_target(target: &Target) -> TargetPlan {
    match target {
        Target::Backend(id) => TargetPlan::Backend(id.0),
        Target::Split(parts) => {
            let weights: Vec<u32> = parts.iter().map(|(_, w)| *w).collect();
            TargetPlan::Split {
                backends: parts.iter().map(|(id, _)| id.0).collect(),
                schedule: Schedule::new(&weights),
            }
        }
        Target::Redirect(redirect) => TargetPlan::Redirect(redirect.clone()),
        Target::Respond(respond) => TargetPlan::Respond(respond.clone()),
        Target::Deny => TargetPlan::Deny,
    }
}

fn build_backend(
    backend: &Backend,
    resolved: &HashMap<ServerAddress, Option<SocketAddr>>,
    registry: &StateRegistry,
    pools: &PoolRegistry,
) -> BackendPlan {
    let client_tls = backend.tls.as_ref().and_then(super::tls::client_config);
    let mut members = Vec::with_capacity(backend.servers.len());
    let mut servers = Vec::with_capacity(backend.servers.len());
    for server in &backend.servers {
        let state = registry.server(backend, server);
        let addr = server
            .address
            .as_socket_addr()
            .or_else(|| resolved.get(&server.address).copied().flatten());
        match addr {
            Some(_) => {
                let was_dns = state.check_status().reason.as_deref() == Some("dns");
                if was_dns {
                    state.update_check_status(|c| c.reason = None);
                    if !state.is_checked() {
                        state.set_health(Health::Up);
                    }
                }
            }
            None => {
                state.set_health(Health::Down);
                state.update_check_status(|c| c.reason = Some("dns".to_owned()));
            }
        }
        let pool = addr.map(|a| pools.pool(&backend.name, &server.name, a, POOL_IDLE_TIMEOUT));
        members.push(Member {
            state: Arc::clone(&state),
            is_backup: server.backup,
        });
        servers.push(ServerPlan {
            cookie_id: cookie_id(&backend.name, &server.name).into(),
            state,
            address: server.address.clone(),
            pool,
            tls: client_tls.as_ref().and_then(|config| {
                super::tls::upstream_tls(config, backend.host.as_deref(), &server.address.host)
            }),
        });
    }
    let cookie = backend.cookie.as_ref().map(|c| {
        let value = |s: &ServerPlan, secure: &str| {
            HeaderValue::try_from(format!(
                "{}={}; Path=/; HttpOnly{secure}",
                c.name, s.cookie_id
            ))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        CookiePlan {
            name: c.name.clone(),
            set_cookie: servers.iter().map(|s| value(s, "")).collect(),
            set_cookie_secure: servers.iter().map(|s| value(s, "; Secure")).collect(),
        }
    });
    BackendPlan {
        name: backend.name.clone(),
        balancer: Balancer::new(backend.balance, members),
        servers: servers.into_boxed_slice(),
        host: backend
            .host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok()),
        timeouts: backend.timeouts,
        retries: backend.retries,
        cookie,
        passive_fall: backend.passive_fall,
        max_body: backend.max_body,
        drain_to_maint: backend.drain_to_maint,
        request_headers: backend.request_headers.clone(),
        response_headers: backend.response_headers.clone(),
    }
}

/// The opaque sticky-cookie id of a server: a hash of its names, so it names
/// no address and stays the same across reloads and restarts.
fn cookie_id(backend: &str, server: &str) -> String {
    // FNV-1a, 64 bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in backend.bytes().chain([0]).chain(server.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Host names (not IP literals) among the servers' addresses.
pub fn names_to_resolve(topology: &Topology) -> Vec<ServerAddress> {
    let mut names: Vec<ServerAddress> = topology
        .backends
        .iter()
        .flat_map(|b| b.servers.iter())
        .filter(|s| s.address.as_socket_addr().is_none())
        .map(|s| s.address.clone())
        .collect();
    names.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    names.dedup();
    names
}
