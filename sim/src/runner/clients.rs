//! The clients: their turns, operations, follow-up writes and timeouts, and recording outcomes.
//!
//! Part of [`Runner`](super::Runner): an `impl` block of its own, split out of `runner.rs`
//! along its seams; the state stays in `Runner`.

use super::*;

impl<D: SimDisk> Runner<D> {
    pub(super) fn client_turn(&mut self, client: usize) {
        if self.phase == Phase::Final || self.clients[client].in_flight.is_some() {
            return;
        }
        let workload = &self.config.workload;
        let state = &mut self.clients[client];
        let (request, record, follow_up) = match self.owed[client].take() {
            Some(owed) => {
                let (request, record) =
                    state.follow_up_op(workload, owed.kind, owed.key, owed.context, owed.read);
                (request, record, None)
            }
            None => state.next_op(workload, &self.keys),
        };
        state.follow_up = follow_up;
        // Clients spread over the members; a node that left (or is being removed) gets none.
        // With a topology, client c is attached to datacenter c mod the datacenter count and
        // talks to its members only (to any member while its datacenter has none yet).
        let mut coordinators = active_indexes(&self.slots);
        if let Some(topology) = &self.config.topology {
            let home = client % topology.datacenters.len();
            let local: Vec<usize> = coordinators
                .iter()
                .copied()
                .filter(|index| self.locations[*index].datacenter_index == home)
                .collect();
            if !local.is_empty() {
                coordinators = local;
            }
        }
        let state = &mut self.clients[client];
        let node = coordinators[state.rng().random_range(0..coordinators.len())];
        let is_batch_write = matches!(request, ringkv_core::ClientRequest::MSet { .. });
        let op = self.history.invoke(client, node_id(node), record, self.now, false);
        if is_batch_write {
            self.batch_writes.insert(op);
        }
        self.clients[client].in_flight = Some(op);
        self.trace.record(self.now, Some(node), 9, op as u64, || {
            format!("client {client} op {op}: {request:?}")
        });
        if self.slots[node].node.is_none() {
            let refused = OpOutcome::Failed("connection refused: the node is down".into());
            return self.complete(op, refused, None);
        }
        self.schedule(self.config.workload.op_timeout, Event::ClientTimeout { op });
        self.feed(node, Some(Input::Client { request: op as u64, op: request }));
    }

    pub(super) fn client_reply(
        &mut self,
        op: OpIndex,
        result: Result<ClientResponse, ClientError>,
    ) {
        let (outcome, context) = match result {
            Ok(ClientResponse::Read(read)) => {
                (OpOutcome::Ok { reads: vec![read.values] }, Some(read.context))
            }
            Ok(ClientResponse::ReadMany(reads)) => {
                (OpOutcome::Ok { reads: reads.into_iter().map(|read| read.values).collect() }, None)
            }
            Ok(ClientResponse::Cas(reply)) => (OpOutcome::Serial(reply), None),
            Ok(_) => (OpOutcome::Ok { reads: Vec::new() }, None),
            Err(error) => (outcome_of_error(&error, self.batch_writes.contains(&op)), None),
        };
        self.complete(op, outcome, context);
    }

    pub(super) fn complete(&mut self, op: OpIndex, outcome: OpOutcome, context: Option<Context>) {
        let ok = matches!(outcome, OpOutcome::Ok { .. });
        let code = match &outcome {
            OpOutcome::Ok { .. } | OpOutcome::Serial(_) => 0,
            OpOutcome::Failed(_) => 1,
            _ => 2,
        };
        let text = self.trace.is_logging().then(|| format!("op {op} completed: {outcome:?}"));
        if !self.history.complete(op, self.now, outcome) {
            return;
        }
        self.trace
            .record(self.now, None, 10, ((op as u64) << 2) | code, || text.unwrap_or_default());
        let Some(record) = self.history.get(op) else {
            return;
        };
        if record.final_pass {
            self.final_remaining = self.final_remaining.saturating_sub(1);
            if self.final_remaining == 0 {
                self.schedule(Duration::from_millis(500), Event::End);
            }
            return;
        }
        let client = record.client;
        let read_key = match &record.request {
            OpRequest::Read { keys, .. } => keys.first().cloned(),
            OpRequest::Write { .. } | OpRequest::Cas { .. } | OpRequest::Flush { .. } => None,
        };
        let state = &mut self.clients[client];
        state.in_flight = None;
        if let (OpRequest::Cas { key, .. }, OpOutcome::Serial(reply)) =
            (&record.request, &record.outcome)
        {
            state.observe_serial(key, reply.current.clone());
        }
        match (state.follow_up.take(), ok, context, read_key) {
            (Some(kind), true, Some(context), Some(key)) => {
                self.owed[client] = Some(OwedWrite { key, context, read: op, kind });
                self.schedule(Duration::ZERO, Event::ClientTurn { client });
            }
            _ => {
                let think = self.think_time(client);
                self.schedule(think, Event::ClientTurn { client });
            }
        }
    }

    pub(super) fn think_time(&mut self, client: usize) -> Duration {
        let workload = &self.config.workload;
        let mean_secs = workload.clients_count as f64 / workload.ops_per_sec;
        let secs = exponential(self.clients[client].rng(), mean_secs);
        Duration::from_nanos((secs * 1e9) as u64)
    }
}
