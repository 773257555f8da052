package cluster

import (
	"bytes"
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/zeebo/blake3"

	pb "github.com/face0/face0/plugins/proto"
	"github.com/face0/face0/plugins/value"
)

// RefPrefix marks a tensor whose bytes are in the object store: on the wire,
// its shm_file holds RefPrefix and the object's name, and data is empty.
// (Between processes of one machine shm_file names a file in shared memory;
// here it names an object. Either way: the data lives elsewhere, there.)
const RefPrefix = "face0-object:"

// InlineMax: tensors smaller than this travel inside the message.
const InlineMax = 64 << 10

// ObjectName is a tensor's content address: the BLAKE3 hash of its bytes,
// the hash the cache uses for its blobs.
func ObjectName(data []byte) string {
	sum := blake3.Sum256(data)
	return "b3-" + hex.EncodeToString(sum[:])
}

// Objects moves tensors through the object store by content address, so a
// value crosses the network once: a tensor already in the store is not put
// again, and one this process holds in memory (it put or fetched it) is not
// fetched again.
type Objects struct {
	store jetstream.ObjectStore
	ttl   time.Duration

	mu    sync.Mutex
	known map[string]time.Time // in the store, put at
	mem   *memory              // nil: nothing kept
	// keepPuts: mem keeps copies of what is put, too.
	keepPuts bool

	puts, skips, gets, hits atomic.Int64
}

// NewObjects works on store, whose objects live for ttl.
func NewObjects(store jetstream.ObjectStore, ttl time.Duration) *Objects {
	return &Objects{store: store, ttl: ttl, known: map[string]time.Time{}}
}

// KeepInMemory keeps up to n bytes of the tensors fetched, and with puts
// those put too, least recently used first out: a worker has a node's
// output at hand for the next node on the same machine, and a server does
// not fetch again a tensor a node passed on unchanged.
func (o *Objects) KeepInMemory(n int64, puts bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mem, o.keepPuts = newMemory(n), puts
}

// Stats count what crossed the network: objects put and fetched, and those
// that did not need to be (already in the store; in memory).
type Stats struct{ Puts, Skips, Gets, Hits int64 }

// Stats says what this process moved so far.
func (o *Objects) Stats() Stats {
	return Stats{Puts: o.puts.Load(), Skips: o.skips.Load(), Gets: o.gets.Load(), Hits: o.hits.Load()}
}

// Put stores data under its content address unless it is there already and
// not about to expire, and returns the name.
func (o *Objects) Put(ctx context.Context, data []byte) (string, error) {
	name := ObjectName(data)
	return name, o.put(ctx, name, data)
}

func (o *Objects) put(ctx context.Context, name string, data []byte) error {
	fresh := func(at time.Time) bool { return time.Since(at) < o.ttl/2 }
	o.mu.Lock()
	at, ok := o.known[name]
	o.mu.Unlock()
	if !ok {
		if info, err := o.store.GetInfo(ctx, name); err == nil && !info.Deleted {
			at, ok = info.ModTime, true
		}
	}
	if !ok || !fresh(at) {
		if _, err := o.store.Put(ctx, jetstream.ObjectMeta{Name: name}, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("put tensor in the object store: %w", err)
		}
		o.puts.Add(1)
		at = time.Now()
	} else {
		o.skips.Add(1)
	}
	o.mu.Lock()
	o.known[name] = at
	if len(o.known) > 100000 { // forget the oldest half, now and then
		for k, t := range o.known {
			if time.Since(t) > o.ttl/4 {
				delete(o.known, k)
			}
		}
	}
	if o.mem != nil && o.keepPuts {
		o.mem.add(name, bytes.Clone(data)) // data may be borrowed (a plugin's shared memory)
	}
	o.mu.Unlock()
	return nil
}

// ErrObjectGone means a tensor a message refers to is no longer in the
// object store (it expired): the sender puts it again.
var ErrObjectGone = errors.New("tensor no longer in the object store")

// Get returns the bytes of the named object, from memory when this process
// has them. The caller must not modify them.
func (o *Objects) Get(ctx context.Context, name string) ([]byte, error) {
	o.mu.Lock()
	if o.mem != nil {
		if b, ok := o.mem.get(name); ok {
			o.mu.Unlock()
			o.hits.Add(1)
			return b, nil
		}
	}
	o.mu.Unlock()
	var data []byte
	var err error
	for try := 0; try < 3; try++ {
		// A concurrent Put of the same name replaces the object's chunks
		// under a reader: read again.
		if data, err = o.get(ctx, name); err == nil || errors.Is(err, ErrObjectGone) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	o.gets.Add(1)
	o.mu.Lock()
	o.known[name] = time.Now().Add(-o.ttl / 4) // present, age unknown
	if o.mem != nil {
		o.mem.add(name, data) // shared with the caller, who only reads it
	}
	o.mu.Unlock()
	return data, nil
}

func (o *Objects) get(ctx context.Context, name string) ([]byte, error) {
	res, err := o.store.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%s: %w", name, ErrObjectGone)
	}
	if err != nil {
		return nil, fmt.Errorf("get tensor %s from the object store: %w", name, err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, err
	}
	// Streaming into one buffer of the right size: no growing, no copy.
	data := make([]byte, info.Size)
	if _, err := io.ReadFull(res, data); err != nil {
		return nil, fmt.Errorf("get tensor %s from the object store: %w", name, err)
	}
	// Reading to the end checks the object's digest.
	if _, err := io.Copy(io.Discard, res); err != nil {
		return nil, fmt.Errorf("get tensor %s from the object store: %w", name, err)
	}
	return data, nil
}

// Send returns values with every tensor of InlineMax bytes or more put in
// the object store and replaced by a reference. values is not modified: it
// belongs to the engine, which may hand it to other nodes.
func (o *Objects) Send(ctx context.Context, values map[string]*pb.Value) (map[string]*pb.Value, error) {
	return value.RewriteTensorsIn(values, func(t *pb.Tensor) (*pb.Tensor, error) {
		if len(t.Data) < InlineMax || t.ShmFile != "" {
			return t, nil
		}
		name := ObjectName(t.Data)
		if err := o.put(ctx, name, t.Data); err != nil {
			return nil, err
		}
		return &pb.Tensor{Dtype: t.Dtype, Shape: t.Shape, ShmFile: RefPrefix + name}, nil
	})
}

// Receive fetches the data of every referenced tensor in values, in place
// (values came off the wire and belong to the caller).
func (o *Objects) Receive(ctx context.Context, values map[string]*pb.Value) error {
	var err error
	for _, v := range values {
		value.EachTensor(v, func(t *pb.Tensor) {
			name, ok := strings.CutPrefix(t.ShmFile, RefPrefix)
			if !ok || err != nil {
				if t.ShmFile != "" && err == nil && !ok {
					err = fmt.Errorf("tensor names %q, which is no object", t.ShmFile)
				}
				return
			}
			var data []byte
			if data, err = o.Get(ctx, name); err == nil {
				t.Data, t.ShmFile = data, ""
			}
		})
	}
	return err
}

// PutBody stores a message body too large for a message.
func (o *Objects) PutBody(ctx context.Context, body []byte) (string, error) {
	name := "body-" + ObjectName(body)
	return name, o.put(ctx, name, body)
}

// memory is a byte-bounded LRU of objects.
type memory struct {
	max, size int64
	order     *list.List // of *memEntry, front: most recent
	byName    map[string]*list.Element
}

type memEntry struct {
	name string
	data []byte
}

func newMemory(max int64) *memory {
	return &memory{max: max, order: list.New(), byName: map[string]*list.Element{}}
}

func (m *memory) get(name string) ([]byte, bool) {
	e, ok := m.byName[name]
	if !ok {
		return nil, false
	}
	m.order.MoveToFront(e)
	return e.Value.(*memEntry).data, true
}

// add keeps data, which nobody modifies.
func (m *memory) add(name string, data []byte) {
	if int64(len(data)) > m.max/2 {
		return
	}
	if e, ok := m.byName[name]; ok {
		m.order.MoveToFront(e)
		return
	}
	m.byName[name] = m.order.PushFront(&memEntry{name, data})
	m.size += int64(len(data))
	for m.size > m.max {
		last := m.order.Back()
		me := last.Value.(*memEntry)
		m.order.Remove(last)
		delete(m.byName, me.name)
		m.size -= int64(len(me.data))
	}
}

// Forget drops what this process knows to be in the store, so that the next
// Send puts every tensor again (after a peer found one gone).
func (o *Objects) Forget() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.known)
}
