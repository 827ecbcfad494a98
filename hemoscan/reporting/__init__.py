"""What a job looks like to a person: status, results, the HTML report (reads only)."""
