"""The container's entry point: ``python -m inferlab.scaling.entrypoint serve``.

It replaces itself with the vLLM server (exec), so SIGTERM from ``docker stop`` or SageMaker reaches
the server directly and starts its drain; see inferlab.scaling.sagemaker for the contract.
"""
import os
import sys

from inferlab.scaling.sagemaker import container_command

if __name__ == "__main__":
    command = container_command(sys.argv[1:], dict(os.environ))
    os.execv(command[0], command)
