//! The tower layers of the client stack and its innermost service.
//!
//! The order, outermost first, is documented on
//! [`HttpClientBuilder`](crate::HttpClientBuilder); each module documents one
//! layer.

pub(crate) mod headers;
pub(crate) mod hyper_service;
pub(crate) mod retry;
pub(crate) mod timeout;
pub(crate) mod trace;

use std::future::Future;
use std::pin::Pin;

/// The boxed future every layer returns.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
