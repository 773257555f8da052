package cache

import (
	"fmt"
	bolt "go.etcd.io/bbolt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

func TestZZCheckCost(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, WithFlushInterval(0))
	r := rand.New(rand.NewPCG(1, 2))
	total := 0
	for i := range 20000 {
		n := 16 + r.IntN(4096)
		if i%10 == 0 {
			n = 16 << 10
		}
		total += n
		mustPut(t, s, testKey(fmt.Sprint(i)), testValue(fmt.Sprint(i), n))
	}
	s.Close()
	for range 3 {
		t0 := time.Now()
		s2, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		open := time.Since(t0)
		t0 = time.Now()
		var n int
		s2.db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				n++
				t.Log(err)
			}
			return nil
		})
		chk := time.Since(t0)
		t0 = time.Now()
		s2.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketInline).ForEach(func(k, v []byte) error { return nil })
		})
		fe := time.Since(t0)
		st, _ := osStat(dir + "/index.db")
		t.Logf("values %d MB, index.db %d MB: open %v, check %v (%d errs), inline foreach %v", total>>20, st>>20, open, chk, n, fe)
		s2.Close()
	}
}
func osStat(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
