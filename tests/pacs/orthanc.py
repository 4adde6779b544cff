"""A real Orthanc on loopback for the PACS tests and benchmark: generated configuration, its own
storage folder, free ports, the DICOMweb plugin, and the viewer registered as a DICOM modality."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins", "/usr/local/share/orthanc/plugins")
VIEWER_AE = "SALIENCYVIEW"
ORTHANC_AE = "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dicomweb_plugin() -> str | None:
    for folder in PLUGIN_DIRS:
        path = Path(folder) / "libOrthancDicomWeb.so"
        if path.exists():
            return str(path)
    return None


class Orthanc:
    """``start()`` / ``stop()`` an Orthanc; ``users`` turns HTTP basic authentication on."""

    def __init__(
        self, executable: str, plugin: str, folder: Path, *, users: dict[str, str] | None = None, pki=None
    ):
        self.executable, self.plugin, self.folder = executable, plugin, Path(folder)
        self.http_port, self.dicom_port, self.scp_port = free_port(), free_port(), free_port()
        self.users = users
        self.pki = pki  # tests.pacs.certificates.Pki: DICOM TLS only, a client certificate required
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    def config(self) -> dict:
        config = {
            "Name": "saliency-viewer-test",
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AE,
            "DicomCheckCalledAet": True,
            # Only the viewer, from loopback, may use the DICOM services.
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": {"viewer": [VIEWER_AE, "127.0.0.1", self.scp_port]},
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users or {},
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.http_port}"},
            "HttpTimeout": 30,
            "DicomScuTimeout": 10,
            "StableAge": 1,
        }
        if self.pki is not None:
            config.update(
                DicomTlsEnabled=True,
                DicomTlsCertificate=str(self.pki.server_cert),
                DicomTlsPrivateKey=str(self.pki.server_key),
                DicomTlsTrustedCertificates=str(self.pki.ca),
                DicomTlsRemoteCertificateRequired=True,
            )
            config["DicomModalities"] = {
                "viewer": {"AET": VIEWER_AE, "Host": "127.0.0.1", "Port": self.scp_port, "UseDicomTls": True}
            }
        return config

    def start(self) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(self.config(), indent=1))
        with open(self.folder / "orthanc.log", "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, str(path)], stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                if self.get("/system").ok and self._dicom_up():
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not start in 30 s")

    def _dicom_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crashed server does."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def _auth(self):
        if self.users:
            user, password = next(iter(self.users.items()))
            return (user, password)
        return None

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.base + path, auth=self._auth(), timeout=30, **kwargs)

    def upload(self, files) -> list[str]:
        """POST each file to /instances; the Orthanc ids."""
        ids = []
        with requests.Session() as session:
            session.auth = self._auth()
            for path in files:
                answer = session.post(self.base + "/instances", data=Path(path).read_bytes(), timeout=60)
                answer.raise_for_status()
                ids.append(answer.json()["ID"])
        return ids

    def study_instances(self, study_uid: str) -> list[dict]:
        found = requests.post(
            self.base + "/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True},
            auth=self._auth(),
            timeout=30,
        )
        found.raise_for_status()
        return found.json()

    def file(self, instance_id: str) -> bytes:
        answer = self.get(f"/instances/{instance_id}/file")
        answer.raise_for_status()
        return answer.content


def orthanc_executable() -> str | None:
    return shutil.which("Orthanc") or (os.environ.get("ORTHANC") or None)
