package server

import (
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkPromptToStart measures POST /prompt until the submitting client's
// websocket delivers execution_start, on an idle server (one Slow node, one
// step, no delay). Reports the median.
func BenchmarkPromptToStart(b *testing.B) {
	ts := startServer(b, newHome(b))
	ws := dialWS(b, ts.url, "?clientId=bench")
	readUntil(b, ws, 5*time.Second, func(m wsMsg) bool { return m.Type == "status" })
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		id := submit(b, ts.url, map[string]any{"prompt": slowPrompt(1, 0, false), "client_id": "bench"})
		var t1 time.Time
		readUntil(b, ws, 10*time.Second, func(m wsMsg) bool {
			if m.Type == "execution_start" && m.Data["prompt_id"] == id {
				t1 = time.Now()
			}
			return finished(id)(m)
		})
		lat = append(lat, t1.Sub(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-to-start/median")
}

// BenchmarkFanout200 runs a prompt (5 progress steps with previews) watched by
// 200 websocket clients and reports the medians of: POST until every client has
// seen "executing null", and the spread between the first and the last client
// receiving that final message.
func BenchmarkFanout200(b *testing.B) {
	ts := startServer(b, newHome(b))
	var total, spread, start []time.Duration
	for b.Loop() {
		r := fanout(b, ts, 200, slowPrompt(5, 0, true))
		total = append(total, r.total)
		spread = append(spread, r.finalSpread)
		start = append(start, r.startDelay)
	}
	med := func(d []time.Duration) float64 {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(med(total), "ms-all-done/median")
	b.ReportMetric(med(spread), "ms-final-spread/median")
	b.ReportMetric(med(start), "ms-to-start/median")
}

// BenchmarkOpenStore measures opening a server.db holding a full history
// (10000 entries, about 30 MB) with the start-up checks (the bounds-checked
// walk, bbolt's tx.Check, the record seals), against the baseline in the same
// run: bbolt's Open and one read of every record. Report the ratio.
func BenchmarkOpenStore(b *testing.B) {
	home := b.TempDir()
	fx := makeDB(b, home, 10000, 10)
	b.Run("baseline", func(b *testing.B) {
		for b.Loop() {
			db, err := bolt.Open(fx.path, 0o600, boltOptions)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			_ = db.View(func(tx *bolt.Tx) error {
				return tx.ForEach(func(_ []byte, bk *bolt.Bucket) error {
					return bk.ForEach(func(k, v []byte) error { n += len(k) + len(v); return nil })
				})
			})
			db.Close()
		}
	})
	b.Run("checked", func(b *testing.B) {
		for b.Loop() {
			st, err := openStore(fx.path, storeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			st.close()
		}
	})
}
