"""WeChat Pay API v3 (JSON, SHA256-RSA2048 signatures, AEAD_AES_256_GCM resources).

Pure functions for both sides of the wire: the client signs requests, verifies responses and
decrypts notifications; the simulator verifies requests, signs responses and encrypts
notifications and certificates, with the same code.
"""
