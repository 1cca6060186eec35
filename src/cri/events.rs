//! `GetContainerEvents`: one hub subscription per stream, each event converted to the wire
//! type as it is sent. A subscriber that falls behind gets one error (from the hub's
//! `Lagged`) and the stream ends; kubelet then relists and subscribes again.

use tonic::{Response, Status};

use super::runtime::RuntimeServer;
use super::{ResponseStream, convert, instrument};
use crate::proto;

impl RuntimeServer {
    pub(super) async fn get_container_events_rpc(
        &self,
    ) -> Result<Response<ResponseStream<proto::ContainerEventResponse>>, Status> {
        let span =
            tracing::info_span!("cri.GetContainerEvents", subscriber = tracing::field::Empty);
        instrument::rpc(span.clone(), async {
            let subscription = self.events().subscribe();
            span.record("subscriber", subscription.id());
            let stream =
                futures_util::stream::unfold(subscription, |mut subscription| async move {
                    let item = match subscription.next().await? {
                        Ok(event) => Ok(convert::event::container_event(&event)),
                        Err(err) => Err(Status::from(err)),
                    };
                    Some((item, subscription))
                });
            Ok(Box::pin(stream) as ResponseStream<proto::ContainerEventResponse>)
        })
        .await
    }
}
