"""The chain side: contract ABI, the agreement's Config, the signed report, signatures, keystores, dev chains."""
