//! Client SCAN over the token-ordered data space.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    /// Starts a scan step from the cursor over the run of arcs that one replica holds: this node
    /// when it holds the cursor's arc and serves reads (no hop), else the first other replica
    /// believed up.
    pub(super) fn start_scan(
        &mut self,
        now: Instant,
        cursor: u64,
        count: usize,
        reply_to: ReplyTo,
    ) {
        let count = count.clamp(1, self.config.limits.batch_keys_max);
        let replicas_n = self.config.keyspace.replicas_n;
        let low = if cursor == 0 { 0 } else { cursor.saturating_add(1) };
        let replicas = self.membership.ring().preference_list_for_token(low, replicas_n);
        let replica = if replicas.contains(&self.id) && self.refill.is_none() {
            Some(self.id)
        } else {
            replicas.iter().copied().find(|node| *node != self.id && !self.is_down(*node))
        };
        let Some(replica) = replica else {
            let error = ClientError::Unavailable { required: 1, alive: 0 };
            return self.deliver(now, reply_to, Outcome::Failed(error));
        };
        // Extend the step over the following arcs the same replica holds, so that a page fills up
        // to `count` keys instead of ending at every arc boundary.
        let mut high = self.membership.ring().arc_end_from(low).unwrap_or(u64::MAX);
        while high < u64::MAX
            && self
                .membership
                .ring()
                .preference_list_for_token(high + 1, replicas_n)
                .contains(&replica)
        {
            high = self.membership.ring().arc_end_from(high + 1).unwrap_or(u64::MAX);
        }
        if replica == self.id {
            let result = self.scan_tokens(low, high, count);
            return self.deliver(now, reply_to, Outcome::Forwarded(result));
        }
        let forward = self.coordinator.start_forward(reply_to, now + self.config.request_timeout);
        self.send(replica, PeerMessage::ScanRequest { forward, low, high, count });
    }

    /// This node's live keys with tokens in `[low, high]`, in token order, at most `count`, and
    /// the cursor that continues after them (0 when the ring is done). At most
    /// [`SCAN_EXAMINED_MAX`] stored objects are read per step, so that a stretch of tombstones
    /// cannot hold the node for long: the page then comes back short with a cursor to go on from.
    pub(super) fn scan_tokens(
        &mut self,
        low: u64,
        high: u64,
        count: usize,
    ) -> Result<ClientResponse, ClientError> {
        let count = count.max(1);
        let wall = self.wall;
        let mut keys: Vec<Bytes> = Vec::new();
        let mut examined = 0usize;
        let mut last_token = None;
        let mut stopped = false;
        visit_data(&mut self.storage, low, high, |token, key, bytes| {
            if keys.len() == count || examined == SCAN_EXAMINED_MAX {
                stopped = true;
                return false;
            }
            examined += 1;
            last_token = Some(token);
            if decode_object(&bytes).is_ok_and(|object| !object.live_values(wall).is_empty()) {
                keys.push(key);
            }
            true
        })?;
        let cursor = match last_token {
            Some(token) if stopped => token,
            _ if high == u64::MAX => 0,
            _ => high,
        };
        Ok(ClientResponse::Scanned { keys, cursor })
    }
}
