package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bus is one connection's handles on face0's streams and buckets.
type Bus struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Jobs    jetstream.Stream
	Results jetstream.Stream
	Workers jetstream.KeyValue
	Objects *Objects
}

// Open finds face0's streams and buckets on the connection's NATS server.
// With settings (a face0 server does this) it creates or updates them to
// match; without (a worker), it uses them as they are and creates those
// missing with the defaults.
func Open(ctx context.Context, nc *nats.Conn, settings *Settings) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var s Settings
	if settings != nil {
		s = *settings
	}
	s = s.withDefaults()
	update := settings != nil
	b := &Bus{NC: nc, JS: js}
	stream := func(cfg jetstream.StreamConfig) (jetstream.Stream, error) {
		if !update {
			if st, err := js.Stream(ctx, cfg.Name); err == nil {
				return st, nil
			} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, explainJS(nc, err)
			}
		}
		st, err := js.CreateOrUpdateStream(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("set up stream %s: %w", cfg.Name, explainJS(nc, err))
		}
		return st, nil
	}
	if b.Jobs, err = stream(jetstream.StreamConfig{
		Name: JobsStream, Description: "face0: nodes waiting for a worker",
		Subjects: []string{"face0.jobs.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
		MaxAge: s.JobTTL, Duplicates: 2 * time.Minute,
	}); err != nil {
		return nil, err
	}
	if b.Results, err = stream(jetstream.StreamConfig{
		Name: ResultsStream, Description: "face0: results of nodes run by workers",
		Subjects: []string{"face0.results.>"}, Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage,
		MaxAge: s.ResultTTL, Duplicates: 10 * time.Minute, MaxMsgsPerSubject: 1,
	}); err != nil {
		return nil, err
	}
	kvCfg := jetstream.KeyValueConfig{Bucket: WorkersBucket, Description: "face0: workers, their capabilities, servers", History: 1, TTL: 10 * time.Minute, Storage: jetstream.FileStorage}
	if b.Workers, err = keyValue(ctx, js, kvCfg, update); err != nil {
		return nil, fmt.Errorf("set up bucket %s: %w", WorkersBucket, explainJS(nc, err))
	}
	objCfg := jetstream.ObjectStoreConfig{Bucket: ObjectsBucket, Description: "face0: tensors by content (BLAKE3)", TTL: s.ObjectTTL, MaxBytes: s.ObjectBytes, Storage: jetstream.FileStorage}
	if s.ObjectBytes == 0 {
		objCfg.MaxBytes = -1
	}
	var obs jetstream.ObjectStore
	if !update {
		obs, err = js.ObjectStore(ctx, ObjectsBucket)
	}
	if update || errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateOrUpdateObjectStore(ctx, objCfg)
	}
	if err != nil {
		return nil, fmt.Errorf("set up object store %s: %w", ObjectsBucket, explainJS(nc, err))
	}
	ttl := s.ObjectTTL
	if st, err := obs.Status(ctx); err == nil && st.TTL() > 0 {
		ttl = st.TTL()
	}
	b.Objects = NewObjects(obs, ttl)
	return b, nil
}

func keyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, update bool) (jetstream.KeyValue, error) {
	if !update {
		kv, err := js.KeyValue(ctx, cfg.Bucket)
		if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
			return kv, err
		}
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

// explainJS says what to do when the NATS server has no JetStream.
func explainJS(nc *nats.Conn, err error) error {
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("%w: the NATS server at %s runs without JetStream; start it with -js (nats-server -js -sd DIR), or use face0 serve --nats embedded", err, nc.ConnectedUrlRedacted())
	}
	return err
}
