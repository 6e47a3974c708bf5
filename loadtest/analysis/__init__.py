"""From records to answers: summaries, paired-bootstrap statistics, verdicts, reports and
the results directory."""
