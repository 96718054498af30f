"""One batch's way from claimed to filed: pack, token, upload, and the record it leaves."""
