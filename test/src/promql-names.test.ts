import { describe, expect, it } from 'vitest';
import { metricNamesOf } from './promql-names.ts';

describe('metricNamesOf', () => {
  it('finds the metrics of a dashboard query, not its functions, labels, ranges or keywords', () => {
    expect(
      metricNamesOf(
        'histogram_quantile(0.95, sum by (le, path) (rate(waggle_environment_create_seconds_bucket{path!="cold"}[$__rate_interval])))',
      ),
    ).toEqual(['waggle_environment_create_seconds_bucket']);
    expect(
      metricNamesOf('min by (identity) (waggle_certificate_expiry_timestamp_seconds - time()) / 86400'),
    ).toEqual(['waggle_certificate_expiry_timestamp_seconds']);
    expect(
      metricNamesOf(
        'sum(rate(a_total[5m])) / on (job) group_left (x) sum without (pod) (b_total offset 1h) or vector(0)',
      ),
    ).toEqual(['a_total', 'b_total']);
    expect(metricNamesOf('up{job="a {b}"} == bool 1e3')).toEqual(['up']);
  });
});
