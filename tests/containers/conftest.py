from tests.containers.fixtures import container_engine, metalbus_image, python_base_image

__all__ = ["container_engine", "metalbus_image", "python_base_image"]
