package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openDB opens server.db so that damage never ends in a Go trace and never in
// a silently empty queue and history:
//
//   - the file is first walked with plain reads (scanBolt), because bbolt maps
//     it and faults or panics on what it does not expect;
//   - a sound walk is followed by bbolt's own consistency check (tx.Check);
//   - damage found by either is salvaged: what can still be read goes into a
//     fresh file, the damaged one stays beside it (server.db.damaged-TIME) and
//     a message says what was kept and where the rest is;
//   - a file with nothing readable at all (no valid header, 0 bytes) is not
//     replaced: the server refuses to start, naming the file and the remedy.
func openDB(path string, logf func(string, ...any)) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create folder for the server database: %w", err)
	}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return openBolt(path)
	}
	if err != nil {
		return nil, fmt.Errorf("server database %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("server database %s is not a regular file; move it away and start again", path)
	}
	// Hold the file's lock while checking and salvaging, so that a second
	// `face0 serve` over the same HOME is told so instead of both repairing.
	unlock, err := lockFile(path)
	if err != nil {
		return nil, err
	}
	records := &recordChecker{history: map[string]bool{}}
	scan, err := scanBolt(path, records)
	if err != nil {
		unlock()
		return nil, unreadableDB(path, err)
	}
	problems := scan.problems
	if len(records.bad) > 0 {
		problems = append(problems, fmt.Sprintf("%d record(s) whose bytes were damaged (%s)", len(records.bad), listSome(records.bad)))
	}
	if p := records.orderProblem(); p != "" && len(problems) == 0 {
		problems = append(problems, p)
	}
	if len(problems) == 0 {
		unlock()
		db, err := openBolt(path)
		var locked *errLocked
		if errors.As(err, &locked) {
			return nil, err
		}
		if err == nil {
			if err = checkBolt(db); err == nil {
				return db, nil
			}
			db.Close()
		}
		problems = []string{err.Error()}
		if unlock, err = lockFile(path); err != nil {
			return nil, err
		}
	}
	defer unlock()
	return salvage(path, problems, logf)
}

func unreadableDB(path string, why error) error {
	return fmt.Errorf("server database %s is damaged and nothing in it can be read (%v). "+
		"Move it away to start with an empty queue and history: mv %s %s.bad", path, why, path, path)
}

// errLocked: another process holds the database.
type errLocked struct{ path string }

func (e *errLocked) Error() string {
	return fmt.Sprintf("server database %s is locked: is another `face0 serve` using this HOME? stop it or pass another --home", e.path)
}

// boltOptions: the timeout turns "another face0 serve holds this HOME" into
// an error instead of a hang.
var boltOptions = &bolt.Options{Timeout: 2 * time.Second}

// openBolt opens path with bbolt, turning a panic or a fault during Open into
// an error.
func openBolt(path string) (db *bolt.DB, err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("bbolt cannot open it: %v", r)
		}
	}()
	db, err = bolt.Open(path, 0o600, boltOptions)
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, &errLocked{path: path}
	}
	if err != nil {
		return nil, fmt.Errorf("open server database %s: %w", path, err)
	}
	return db, nil
}

// checkBolt runs bbolt's consistency check (pages referenced twice, pages
// both used and free, keys out of order). scanBolt has already made sure
// every page it reads lies inside the file.
func checkBolt(db *bolt.DB) error {
	var errs []string
	err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, err.Error())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("bbolt's check: %s", strings.Join(errs, "; "))
	}
	return nil
}

// recordChecker finds what bbolt cannot: sealed records whose checksum
// fails, and a history order that does not list each entry exactly once.
type recordChecker struct {
	bad     []string
	history map[string]bool // id -> listed by history_order
	order   []string        // history_order's values
}

func (c *recordChecker) bucket([]string, uint64) {}

func (c *recordChecker) record(path []string, k, v []byte) {
	if len(path) != 1 {
		return
	}
	switch path[0] {
	case string(bucketQueue), string(bucketHistory):
		if _, err := unsealRecord(k, v); err != nil {
			c.bad = append(c.bad, fmt.Sprintf("%s %q", path[0], k))
		}
		if path[0] == string(bucketHistory) {
			c.history[string(k)] = false
		}
	case string(bucketHistoryOrder):
		c.order = append(c.order, string(v))
	}
}

// orderProblem reports a history order that misses, repeats or invents an entry.
func (c *recordChecker) orderProblem() string {
	for _, id := range c.order {
		listed, ok := c.history[id]
		if !ok || listed {
			return fmt.Sprintf("the history order lists %q wrongly", id)
		}
		c.history[id] = true
	}
	for id, listed := range c.history {
		if !listed {
			return fmt.Sprintf("the history order misses %q", id)
		}
	}
	return ""
}

// listSome lists the first few of names.
func listSome(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
}

// salvageRecords collects what a walk of a damaged file finds.
type salvageRecords struct {
	seq     map[string]uint64
	queue   map[string][]byte
	history map[string][]byte
}

func (r *salvageRecords) bucket(path []string, seq uint64) {
	if len(path) == 1 {
		r.seq[path[0]] = seq
	}
}

func (r *salvageRecords) record(path []string, k, v []byte) {
	if len(path) != 1 {
		return
	}
	switch path[0] {
	case string(bucketQueue):
		r.queue[string(k)] = slices.Clone(v)
	case string(bucketHistory):
		r.history[string(k)] = slices.Clone(v)
	}
	// history_order is rebuilt from the entries' own sequence numbers.
}

// salvage copies what can be read from the damaged file at path into a fresh
// database, keeps the damaged file beside it and opens the fresh one.
func salvage(path string, problems []string, logf func(string, ...any)) (*bolt.DB, error) {
	recs := &salvageRecords{seq: map[string]uint64{}, queue: map[string][]byte{}, history: map[string][]byte{}}
	if _, err := scanBolt(path, recs); err != nil {
		return nil, unreadableDB(path, err)
	}
	tmp := path + ".salvage"
	_ = os.Remove(tmp)
	fresh, err := bolt.Open(tmp, 0o600, boltOptions)
	if err != nil {
		return nil, fmt.Errorf("server database %s is damaged (%s), and a fresh file for what can be read cannot be made: %w",
			path, problems[0], err)
	}
	var kept struct{ queue, history int }
	var unreadable []string
	err = fresh.Update(func(tx *bolt.Tx) error {
		q, err := tx.CreateBucket(bucketQueue)
		if err != nil {
			return err
		}
		h, err := tx.CreateBucket(bucketHistory)
		if err != nil {
			return err
		}
		order, err := tx.CreateBucket(bucketHistoryOrder)
		if err != nil {
			return err
		}
		hseq := recs.seq[string(bucketHistory)]
		var late []string // entries whose sequence number is taken
		for _, id := range sortedKeys(recs.history) {
			v := recs.history[id]
			sh, err := decodeHistory([]byte(id), v)
			if err != nil {
				unreadable = append(unreadable, fmt.Sprintf("history %q", id))
				continue
			}
			if order.Get(seqKey(sh.Seq)) != nil {
				late = append(late, id)
				continue
			}
			if err := h.Put([]byte(id), v); err != nil {
				return err
			}
			if err := order.Put(seqKey(sh.Seq), []byte(id)); err != nil {
				return err
			}
			hseq = max(hseq, sh.Seq)
			kept.history++
		}
		for _, id := range late {
			sh, _ := decodeHistory([]byte(id), recs.history[id])
			hseq++
			sh.Seq = hseq
			js, err := json.Marshal(sh)
			if err != nil {
				return err
			}
			if err := h.Put([]byte(id), sealRecord(id, js)); err != nil {
				return err
			}
			if err := order.Put(seqKey(hseq), []byte(id)); err != nil {
				return err
			}
			kept.history++
		}
		if err := h.SetSequence(hseq); err != nil {
			return err
		}
		qseq := recs.seq[string(bucketQueue)]
		for _, id := range sortedKeys(recs.queue) {
			p, err := decodeQueued([]byte(id), recs.queue[id])
			if err != nil || len(p.Prompt) == 0 {
				unreadable = append(unreadable, fmt.Sprintf("queued prompt %q", id))
				continue
			}
			if h.Get([]byte(id)) != nil {
				continue // it finished; the history has it
			}
			if err := q.Put([]byte(id), recs.queue[id]); err != nil {
				return err
			}
			qseq = max(qseq, p.Seq)
			kept.queue++
		}
		return q.SetSequence(qseq)
	})
	if cerr := fresh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("server database %s is damaged (%s), and copying what can be read failed: %w", path, problems[0], err)
	}
	// Keep the damaged file under a new name before the fresh one takes its
	// place: at every moment path holds one of the two.
	damaged, err := keepAside(path)
	if err != nil {
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("server database %s is damaged (%s), and it cannot be set aside: %w", path, problems[0], err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("server database %s is damaged (%s); what could be read is in %s, but moving it into place failed: %w", path, problems[0], tmp, err)
	}
	syncDir(filepath.Dir(path))
	why := problems[0]
	if len(problems) > 1 {
		why += fmt.Sprintf("; and %d more problem(s)", len(problems)-1)
	}
	lost := "nothing was unreadable"
	if len(unreadable) > 0 {
		lost = fmt.Sprintf("unreadable and left out: %s", listSome(unreadable))
	}
	logf("server database %s was damaged (%s). Kept what could be read: %d queued prompt(s) and %d history entries; %s. The damaged file is kept as %s; delete it once nothing more is wanted from it.",
		path, why, kept.queue, kept.history, lost, damaged)
	return openBolt(path)
}

func sortedKeys(m map[string][]byte) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// keepAside gives the damaged file a second name, path.damaged-TIME, by a hard
// link (a copy where links are not possible), and returns that name.
func keepAside(path string) (string, error) {
	base := path + ".damaged-" + time.Now().Format("20060102-150405")
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Link(path, name); err == nil {
		return name, nil
	}
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return "", err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return "", err
	}
	return name, dst.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
