"""Every side effect of the workflows: database, e-mail, DocuSign, files. Small and idempotent."""
