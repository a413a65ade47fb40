"""Real external parts the test suite starts on loopback: etcd + kube-apiserver (+ controller
manager), helm, and PostgreSQL. See scripts/control-plane/README.md."""
