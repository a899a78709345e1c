"""Storage events: messages announcing blobs created or deleted in a storage."""
