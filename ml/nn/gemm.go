package nn

// The matrix multiply behind Conv2D and Dense. Go has no SIMD intrinsics and
// does not auto-vectorise, so speed comes from register blocking: a 4x2 block
// of C lives in 8 scalar registers while the shared dimension streams past,
// giving 8 multiply-adds per 6 loads. Measured on the project's 2-core Xeon,
// 4x2 with the k loop unrolled twice beat 3x3, 4x3, 4x4 (those spill: amd64
// has 16 XMM registers and Go needs a temporary per multiply) and 5x2.
//
// Both operands are packed so the kernel reads them strictly sequentially:
//   A (m x k) as micro-panels of mr rows: ap[(i/mr)*k*mr + kk*mr + i%mr]
//   B (k x n) as micro-panels of nr cols: bp[(j/nr)*k*nr + kk*nr + j%nr]
// Panels are zero-padded to whole micro-tiles, and padded rows/cols are never
// stored, so any m and n work.

const (
	mr = 4
	nr = 2
)

// packedALen is the length of A packed for m rows and depth k.
func packedALen(m, k int) int { return (m + mr - 1) / mr * mr * k }

// packedBLen is the length of B packed for n columns and depth k.
func packedBLen(n, k int) int { return (n + nr - 1) / nr * nr * k }

// packA packs the row-major m x k matrix a (row stride lda) into dst.
func packA(dst, a []float32, m, k, lda int) {
	for i0 := 0; i0 < m; i0 += mr {
		p := dst[i0*k : (i0+mr)*k]
		for r := range mr {
			i := i0 + r
			if i >= m {
				for kk := range k {
					p[kk*mr+r] = 0
				}
				continue
			}
			row := a[i*lda : i*lda+k]
			for kk, v := range row {
				p[kk*mr+r] = v
			}
		}
	}
}

// packBT packs the transpose of the row-major n x k matrix bt (row stride
// ldb): that is how Dense weights [out, in] become the k x n right operand.
func packBT(dst, bt []float32, n, k, ldb int) {
	for j0 := 0; j0 < n; j0 += nr {
		p := dst[j0*k : (j0+nr)*k]
		for c := range nr {
			j := j0 + c
			if j >= n {
				for kk := range k {
					p[kk*nr+c] = 0
				}
				continue
			}
			row := bt[j*ldb : j*ldb+k]
			for kk, v := range row {
				p[kk*nr+c] = v
			}
		}
	}
}

// gemm computes C = A·B for m x n, depth k, from packed operands, writing
// c[i*ldc+j]. It runs on the calling goroutine; callers split the work.
func gemm(m, n, k int, ap, bp, c []float32, ldc int) {
	var acc [mr * nr]float32
	for j0 := 0; j0 < n; j0 += nr {
		// This B micro-panel (k*nr floats) stays in L1 while all of A streams.
		bpj := bp[j0*k : (j0+nr)*k]
		for i0 := 0; i0 < m; i0 += mr {
			kernel4x2(ap[i0*k:(i0+mr)*k], bpj, &acc)
			if i0+mr <= m && j0+nr <= n {
				o := i0*ldc + j0
				c[o], c[o+1] = acc[0], acc[1]
				o += ldc
				c[o], c[o+1] = acc[2], acc[3]
				o += ldc
				c[o], c[o+1] = acc[4], acc[5]
				o += ldc
				c[o], c[o+1] = acc[6], acc[7]
				continue
			}
			for r := 0; r < mr && i0+r < m; r++ {
				for q := 0; q < nr && j0+q < n; q++ {
					c[(i0+r)*ldc+j0+q] = acc[r*nr+q]
				}
			}
		}
	}
}

// kernel4x2 accumulates one 4x2 block of C over the whole depth. The loop is
// unrolled twice because the loop bookkeeping (two slice advances and two
// length checks, which also serve as the bounds-check proof) otherwise costs
// as much as the arithmetic.
func kernel4x2(ap, bp []float32, out *[mr * nr]float32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 float32
	for len(ap) >= 8 && len(bp) >= 4 {
		b0, b1 := bp[0], bp[1]
		a0, a1, a2, a3 := ap[0], ap[1], ap[2], ap[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c10 += a1 * b0
		c11 += a1 * b1
		c20 += a2 * b0
		c21 += a2 * b1
		c30 += a3 * b0
		c31 += a3 * b1
		b0, b1 = bp[2], bp[3]
		a0, a1, a2, a3 = ap[4], ap[5], ap[6], ap[7]
		c00 += a0 * b0
		c01 += a0 * b1
		c10 += a1 * b0
		c11 += a1 * b1
		c20 += a2 * b0
		c21 += a2 * b1
		c30 += a3 * b0
		c31 += a3 * b1
		ap = ap[8:]
		bp = bp[4:]
	}
	if len(ap) >= 4 && len(bp) >= 2 {
		b0, b1 := bp[0], bp[1]
		a0, a1, a2, a3 := ap[0], ap[1], ap[2], ap[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c10 += a1 * b0
		c11 += a1 * b1
		c20 += a2 * b0
		c21 += a2 * b1
		c30 += a3 * b0
		c31 += a3 * b1
	}
	*out = [mr * nr]float32{c00, c01, c10, c11, c20, c21, c30, c31}
}

// MatMul computes the row-major m x n product C = A·B of the row-major
// m x k matrix a and k x n matrix b, using all cores. It is the reference
// entry point for benchmarks and for callers outside conv/dense layers.
func MatMul(a, b []float32, m, k, n int) []float32 {
	if len(a) != m*k || len(b) != k*n {
		panic("nn.MatMul: len(a) must be m*k and len(b) k*n")
	}
	ap := make([]float32, packedALen(m, k))
	packA(ap, a, m, k, k)
	bt := make([]float32, n*k) // b transposed, so packBT can read rows
	for kk := range k {
		for j := range n {
			bt[j*k+kk] = b[kk*n+j]
		}
	}
	bp := make([]float32, packedBLen(n, k))
	packBT(bp, bt, n, k, k)
	c := make([]float32, m*n)
	const cols = 64 // columns per task: enough work to amortise scheduling
	parallel((n+cols-1)/cols, func(_, t int) {
		j0 := t * cols
		j1 := min(j0+cols, n)
		gemm(m, j1-j0, k, ap, bp[j0*k:], c[j0:], n)
	})
	return c
}
