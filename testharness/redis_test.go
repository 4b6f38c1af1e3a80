package testharness

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestStartRedis(t *testing.T) {
	srv := StartRedisServer(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	save, err := c.ConfigGet(ctx, "save").Result()
	require.NoError(t, err)
	require.Equal(t, "", save["save"])

	srv.Stop()
	require.Error(t, c.Ping(ctx).Err())
	srv.Start()
	require.Eventually(t, func() bool { return c.Ping(ctx).Err() == nil }, wait, 10*time.Millisecond)
	require.ErrorIs(t, c.Get(ctx, "k").Err(), redis.Nil, "no persistence by default")

	addr := StartRedis(t, "--maxmemory", "10mb")
	c2 := redis.NewClient(&redis.Options{Addr: addr})
	defer c2.Close()
	mm, err := c2.ConfigGet(ctx, "maxmemory").Result()
	require.NoError(t, err)
	require.Equal(t, "10485760", mm["maxmemory"])
}

func TestRedisPrefix(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: SharedRedisAddr})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("shared redis at %s: %v", SharedRedisAddr, err)
	}
	outside := RedisPrefix(t) + "outside"
	require.NoError(t, c.Set(ctx, outside, "keep", 0).Err())

	var prefix string
	t.Run("sub/with [glob] chars*", func(t *testing.T) {
		prefix = RedisPrefix(t)
		require.True(t, strings.HasPrefix(prefix, "test:TestRedisPrefix/sub/with__glob__chars_:"), prefix)
		require.NotEqual(t, prefix, RedisPrefix(t), "random part")
		for i := range 1200 {
			c.Set(ctx, prefix+"{b1}:"+string(rune('a'+i%26))+strings.Repeat("x", i%7), i, 0)
		}
		n, err := c.Exists(ctx, prefix+"{b1}:a").Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	})
	left := 0
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		left++
	}
	require.NoError(t, iter.Err())
	require.Zero(t, left, "cleanup deleted the subtest's keys")
	require.Equal(t, "keep", c.Get(ctx, outside).Val())
}
