//! A response body fed by a channel: each message is one chunk, sent as soon as it is queued;
//! the body ends when the sender is dropped. Used for streams of JSON lines.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

pub struct ChannelBody {
    receiver: mpsc::Receiver<Vec<u8>>,
}

impl ChannelBody {
    pub fn new(receiver: mpsc::Receiver<Vec<u8>>) -> ChannelBody {
        ChannelBody { receiver }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
