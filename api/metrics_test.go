package api

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/stretchr/testify/require"
)

// TestMetricNames lints the smsgate_api_* metrics after some traffic.
func TestMetricNames(t *testing.T) {
	e := newEnv(t)
	require.Equal(t, 202, e.send(acmeKey, msgBody(acmeNum, "+15557654321", "beer")).status)
	require.Equal(t, 401, e.send("", msgBody(acmeNum, "+15557654321", "hi")).status)
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{
		"smsgate_api_requests_total", "smsgate_api_request_duration_seconds",
		"smsgate_api_messages_accepted_total", "smsgate_api_messages_refused_total",
		"smsgate_api_content_warnings_total",
	} {
		require.True(t, names[n], n)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}
