// Package cluster is face0's protocol for running nodes on other machines
// through NATS JetStream: the names of its streams, buckets and subjects, the
// messages a server and its workers exchange, what a worker advertises it can
// run, and tensors moved through the object store by content address. The
// server's side (cluster/dispatch, an engine.Runner) and the worker's side
// (cluster/worker) both speak it; cluster/natsd embeds a NATS server.
//
// The flow of one node:
//
//	server                                 NATS                         worker
//	Execute(req) ── tensors ≥ 64 KiB ──▶ object store "face0-tensors"
//	             ── job (≤ 1 MiB) ─────▶ stream FACE0_JOBS (work queue)
//	                                     face0.jobs.<group>.<server> ──▶ Fetch(1) of the
//	                                                                     group's consumer
//	             ◀── progress, previews, logs (core NATS) ────────────── InProgress() while
//	             ◀── result ──────────── stream FACE0_RESULTS ◀────────── it runs; then Ack
//
// Every job is delivered at least once (a redelivery after the ack wait, a
// second worker after a NATS crash): a job's result is published with the
// job id as its message id, so JetStream keeps the first and drops the
// others, and a worker that finds a result already there acks the job
// without running it.
package cluster

import (
	"strings"
	"time"
)

// Streams and buckets. All of them use file storage: memory storage vanishes
// when the NATS server restarts.
const (
	// JobsStream holds jobs until a worker acks them (work-queue retention).
	JobsStream = "FACE0_JOBS"
	// ResultsStream holds results for a while; a server that was cut off from
	// NATS finds them there when it is back.
	ResultsStream = "FACE0_RESULTS"
	// ObjectsBucket is the object store of tensors, named by content.
	ObjectsBucket = "face0-tensors"
	// WorkersBucket is the key-value bucket of workers' heartbeats
	// ("w.<worker>"), their groups' capabilities ("caps.<group>") and the
	// servers that dispatch ("d.<server>").
	WorkersBucket = "face0-workers"
)

// Message headers.
const (
	HdrJob        = "Face0-Job"        // the job id, on jobs, results and events
	HdrDispatcher = "Face0-Dispatcher" // the server that sent a job
	HdrNode       = "Face0-Node"       // node type and id, for logs
	HdrWorker     = "Face0-Worker"     // the worker's name, on results and events
	HdrError      = "Face0-Error"      // a result that is a node's error
	HdrBody       = "Face0-Body"       // the body is in the object store under this name
	HdrDelivery   = "Face0-Delivery"   // which delivery of the job an event or result comes from
	HdrEvents     = "Face0-Events"     // on a result: how many events that delivery sent before it
	HdrRPCError   = "Face0-RPC-Error"  // an answer to a fingerprint or verify request that failed
	HdrErrorKind  = "Face0-Error-Kind" // what kind of failure a result's error is, when it matters
)

// KindObjectGone is the error kind of a job whose input tensor expired from
// the object store: its server puts the tensor again and sends the job again.
const KindObjectGone = "object-gone"

// Subjects. A group is a set of workers that can run exactly the same nodes
// (see Caps.Group); a dispatcher is one face0 server.
func JobSubject(group, dispatcher string) string { return "face0.jobs." + group + "." + dispatcher }

// GroupJobs is the filter of a group's consumer. Filters of different groups
// never overlap, as a work-queue stream requires.
func GroupJobs(group string) string { return "face0.jobs." + group + ".*" }

// DispatcherJobs matches every job one server sent, for purging them.
func DispatcherJobs(dispatcher string) string { return "face0.jobs.*." + dispatcher }

// ResultSubject is where a job's result goes.
func ResultSubject(dispatcher, job string) string { return "face0.results." + dispatcher + "." + job }

// DispatcherResults matches every result for one server.
func DispatcherResults(dispatcher string) string { return "face0.results." + dispatcher + ".*" }

// EventSubject carries a running job's progress, previews and logs (core
// NATS: lossy, like progress over a websocket).
func EventSubject(dispatcher, job string) string { return "face0.events." + dispatcher + "." + job }

// DispatcherEvents matches every event for one server.
func DispatcherEvents(dispatcher string) string { return "face0.events." + dispatcher + ".*" }

// CancelSubject tells the worker running a job to stop it.
func CancelSubject(job string) string { return "face0.cancel." + job }

// RPCSubject is where a group's workers answer quick questions (what:
// "fingerprint" or "verify"), one of them each time (a queue group).
func RPCSubject(group, what string) string { return "face0.rpc." + group + "." + what }

// ConsumerName is the durable consumer a group's workers pull from.
func ConsumerName(group string) string { return "face0-group-" + group }

// Keys of WorkersBucket. ClaimKey holds the worker that runs a job of a
// node with side effects, so that a second delivery does not run it too.
func WorkerKey(worker string) string         { return "w." + worker }
func ClaimKey(job string) string             { return "run." + job }
func CapsKey(group string) string            { return "caps." + group }
func DispatcherKey(dispatcher string) string { return "d." + dispatcher }

// Token makes s usable as one subject token: letters, digits, '-' and '_'.
func Token(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// MaxMessage is what a job or result message may carry inline; anything
// larger goes through the object store (NATS refuses messages over its max
// payload, 1 MiB by default).
const MaxMessage = 900 << 10

// BeatAge is how old a worker's last heartbeat may be for other workers to
// count it alive (heartbeats go every second by default).
const BeatAge = 5 * time.Second

// Settings of the streams and buckets.
type Settings struct {
	// ObjectTTL is how long a tensor stays in the object store after it was
	// put (default 1 h). A server re-puts a tensor older than half of it
	// before sending it again.
	ObjectTTL time.Duration
	// ObjectBytes bounds the object store (0: no bound beyond the server's).
	ObjectBytes int64
	// JobTTL drops jobs no worker took within it (default 24 h).
	JobTTL time.Duration
	// ResultTTL is how long results stay (default 1 h).
	ResultTTL time.Duration
}

func (s Settings) withDefaults() Settings {
	if s.ObjectTTL <= 0 {
		s.ObjectTTL = time.Hour
	}
	if s.JobTTL <= 0 {
		s.JobTTL = 24 * time.Hour
	}
	if s.ResultTTL <= 0 {
		s.ResultTTL = time.Hour
	}
	return s
}
