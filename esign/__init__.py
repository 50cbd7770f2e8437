"""DocuSign integration: the SDK adapter, Connect webhook verification, and a local
DocuSign-compatible server so the embedded stack and the tests run without the internet."""
