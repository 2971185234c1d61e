//! The gRPC glue: `RateLimitService/ShouldRateLimit` served by a [`Limiter`], written out by
//! hand (as tonic's code generator would) so no protobuf compiler is needed.

use crate::limiter::Limiter;
use log::warn;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use warden_rls::rls::{RateLimitRequest, RateLimitResponse, METHOD, SERVICE};

#[derive(Clone)]
pub struct RateLimitServer {
    limiter: Arc<Limiter>,
}

impl RateLimitServer {
    pub fn new(limiter: Limiter) -> Self {
        RateLimitServer { limiter: Arc::new(limiter) }
    }
}

impl NamedService for RateLimitServer {
    const NAME: &'static str = SERVICE;
}

struct ShouldRateLimit(Arc<Limiter>);

impl UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<tonic::Response<RateLimitResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let limiter = self.0.clone();
        Box::pin(async move {
            match limiter.should_rate_limit(request.get_ref()).await {
                Ok(response) => Ok(tonic::Response::new(response)),
                // The store cannot answer (UNAVAILABLE) or is full (RESOURCE_EXHAUSTED): each
                // caller's failure mode decides.
                Err(e @ crate::store::StoreError::Full(_)) => {
                    warn!("warden-ratelimit: {e}");
                    Err(tonic::Status::resource_exhausted(e.to_string()))
                }
                Err(e) => {
                    warn!("warden-ratelimit: {e}");
                    Err(tonic::Status::unavailable(e.to_string()))
                }
            }
        })
    }
}

impl<B> Service<http::Request<B>> for RateLimitServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let expected = format!("/{SERVICE}/{METHOD}");
        if request.uri().path() != expected {
            let status = tonic::Status::unimplemented(format!("{} is not served here", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = ShouldRateLimit(self.limiter.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(method, request).await)
        })
    }
}
