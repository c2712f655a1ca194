"""Flask extensions, created unbound and attached by create_app."""

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True, compare_type=True)
