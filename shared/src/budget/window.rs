//! Budget windows, aligned to the UTC calendar (defined with the rate-limit protocol, which
//! shares them with the service).

pub use warden_rls::window::*;
