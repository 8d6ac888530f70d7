//! The engine's client logic as a sans-IO state machine.
//!
//! [`Session`] knows the rooms an engine is logged into, its publishers (one per channel) and
//! players, and the requests in flight. It owns no socket, thread or clock: the driver feeds it
//! API calls ([`Session::handle_command`]), server frames ([`Session::handle_server`]), socket
//! life ([`Session::handle_connected`], [`Session::handle_disconnected`]) and time
//! ([`Session::handle_timeout`]), each with `now`, then drains [`Session::poll_output`] until it
//! returns [`Output::Idle`], which names the next deadline.
//!
//! Every rule that ZEGO answers with an error code before anything reaches the network lives
//! here, so it is tested on fake time without sockets.

mod commands;
mod events;
mod session;

pub use commands::*;
pub use events::*;
pub use session::*;
