//! Warden's rate-limit service: the Envoy rate-limit API (`envoy.service.ratelimit.v3`) over
//! gRPC, for budgets that must hold across every Envoy replica.
//!
//! Limits come with each descriptor (`RateLimitOverride`), so the Warden policy stays the one
//! place they are written; a descriptor without one is not limited. Besides the standard
//! draw, it understands Warden's reservations and settles (`warden_reservation`, `warden_settle`, see
//! `warden_rls::rls`), which give back the unused part of a reservation.
//!
//! Counters live in a [`store::Store`]: in memory (one replica) or in Redis, changed by Lua
//! scripts so that every replica of this service, and every draw of one request, is atomic.

pub mod limiter;
pub mod service;
pub mod store;
