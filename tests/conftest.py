pytest_plugins = ["finetune_devcluster.pytest_plugin"]
