package queue

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// NewEmbedded starts an in-process Redis (miniredis) for development when no
// Redis address is configured. Nothing survives the process. The returned
// func closes the client and stops the server.
func NewEmbedded() (redis.UniversalClient, func(), error) {
	s, err := miniredis.Run()
	if err != nil {
		return nil, nil, fmt.Errorf("queue: embedded store: %w", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	return c, func() { _ = c.Close(); s.Close() }, nil
}
