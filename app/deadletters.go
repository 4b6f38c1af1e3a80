package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/smsgate/smsgate/api"
	"github.com/smsgate/smsgate/webhook"
)

// deadLetters serves the admin dead-letter endpoints from the webhook
// dispatcher.
type deadLetters struct{ hooks *webhook.Dispatcher }

// DeadLetters implements api.DeadLetters.
func (d deadLetters) DeadLetters(ctx context.Context, limit int) ([]api.DeadLetter, error) {
	dls, err := d.hooks.DeadLetters(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.DeadLetter, len(dls))
	for i, dl := range dls {
		out[i] = api.DeadLetter{
			EventID:   dl.EventID,
			Type:      dl.Type,
			OrgID:     dl.Org,
			URL:       dl.URL,
			Attempts:  dl.Attempts,
			LastError: dl.LastError,
			FailedAt:  dl.DeadAt,
			Event:     dl.Body,
		}
	}
	return out, nil
}

// Redeliver implements api.DeadLetters.
func (d deadLetters) Redeliver(ctx context.Context, eventID string) error {
	err := d.hooks.Redeliver(ctx, eventID)
	if errors.Is(err, webhook.ErrNotFound) {
		return fmt.Errorf("%w: %w", api.ErrNotFound, err)
	}
	return err
}
