//! Switchyard: a layer-7 HTTP load balancer and reverse proxy.
//!
//! Layers, lowest first; a module imports only from layers below it (see
//! ARCHITECTURE.md): `config` -> `model` -> `state` -> `balance`, `upstream`
//! -> `runtime` -> `proxy`, `health`, `discovery` -> `admin` -> `app`.
//! `import` sits beside `config`: it turns an HAProxy configuration into TOML
//! text and imports nothing from the other layers.

pub mod admin;
pub mod app;
pub mod balance;
pub mod config;
pub mod discovery;
pub mod health;
pub mod import;
pub mod model;
pub mod proxy;
pub mod runtime;
pub mod state;
pub mod upstream;
