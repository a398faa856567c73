"""Media storage: a port with local-files and S3 adapters, both through obstore."""
