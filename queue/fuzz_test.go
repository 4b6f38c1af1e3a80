package queue

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func FuzzBucketOfID(f *testing.F) {
	q := newQueue(f, miniClient(f), "p:", Options{Buckets: 1024})
	f.Add(q.NewMessageID("+15550001111"))
	f.Add("")
	f.Add("msg_zz")
	f.Add("msg_\xff\xff\xff")
	f.Fuzz(func(t *testing.T, id string) {
		b, ok := q.bucketOfID(id)
		if ok {
			require.GreaterOrEqual(t, b, 0)
			require.Less(t, b, q.Buckets())
		}
	})
}

func FuzzParseCIDValue(f *testing.F) {
	f.Add("msg_x|0")
	f.Add("|")
	f.Add("a|b|c")
	f.Fuzz(func(t *testing.T, v string) {
		id, seg, ok := parseCIDValue(v)
		if ok {
			require.GreaterOrEqual(t, seg, 0)
			id2, seg2, ok2 := parseCIDValue(id + "|" + strconv.Itoa(seg))
			require.True(t, ok2)
			require.Equal(t, id, id2)
			require.Equal(t, seg, seg2)
		}
	})
}
