//! Send on native, not on wasm: the marker traits and boxed future/stream aliases every port uses.
//!
//! Native adapters run the core on a multi-threaded tokio runtime, so everything they hand it must be
//! `Send + Sync`. A Worker isolate is single-threaded and `worker` types are `!Send`. The split is by
//! target, never by cargo feature: features unify across a workspace build.

#[cfg(not(target_family = "wasm"))]
mod imp {
    /// `Send` on native targets; no bound on wasm.
    pub trait MaybeSend: Send {}
    impl<T: Send + ?Sized> MaybeSend for T {}
    /// `Sync` on native targets; no bound on wasm.
    pub trait MaybeSync: Sync {}
    impl<T: Sync + ?Sized> MaybeSync for T {}
    /// A boxed future, `Send` on native targets.
    pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
    /// A boxed stream, `Send` on native targets.
    pub type BoxStream<'a, T> = futures::stream::BoxStream<'a, T>;
}

#[cfg(target_family = "wasm")]
mod imp {
    /// `Send` on native targets; no bound on wasm.
    pub trait MaybeSend {}
    impl<T: ?Sized> MaybeSend for T {}
    /// `Sync` on native targets; no bound on wasm.
    pub trait MaybeSync {}
    impl<T: ?Sized> MaybeSync for T {}
    /// A boxed future, `Send` on native targets.
    pub type BoxFuture<'a, T> = futures::future::LocalBoxFuture<'a, T>;
    /// A boxed stream, `Send` on native targets.
    pub type BoxStream<'a, T> = futures::stream::LocalBoxStream<'a, T>;
}

pub use imp::*;

/// Boxes a future with the target's `Send` rule.
pub fn boxed<'a, F>(fut: F) -> BoxFuture<'a, F::Output>
where
    F: std::future::Future + MaybeSend + 'a,
{
    Box::pin(fut)
}

/// Boxes a stream with the target's `Send` rule.
pub fn boxed_stream<'a, S>(stream: S) -> BoxStream<'a, S::Item>
where
    S: futures::Stream + MaybeSend + 'a,
{
    Box::pin(stream)
}
